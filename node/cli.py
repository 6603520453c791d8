"""The ``radledger`` command line.

Every command turns the typed errors of the layers below into one line on
stderr that names the file and what to do, and a non-zero exit; a traceback is
a bug.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ledger.errors import GenesisError, KeyFileError
from ledger.genesis import Genesis
from ledger.keys import SigningKey, write_key_file
from storage import StorageError, open_store

EXIT_USAGE = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="radledger")
def cli() -> None:
    """radledger: a permissioned BFT ledger for medical-imaging research sites."""


@cli.command()
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Key file to create (JSON, mode 0600). Refuses to overwrite.",
)
@click.option("--force", is_flag=True, help="Replace an existing key file.")
def keygen(out: Path, force: bool) -> None:
    """Generate an ed25519 key pair and print its public key (hex)."""
    key = SigningKey.generate()
    try:
        write_key_file(out, key, overwrite=force)
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(key.public_key.hex())


@cli.group()
def db() -> None:
    """Inspect a node's LevelDB store."""


@db.command("check")
@click.option(
    "--path",
    "path",
    required=True,
    type=click.Path(path_type=Path),
    help="The store directory (a node's data/ledger.db).",
)
@click.option(
    "--genesis",
    "genesis_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The chain's genesis.json: the store must belong to this chain.",
)
def db_check(path: Path, genesis_path: Path) -> None:
    """Audit a store end to end: every block, certificate, index entry and the state root.

    Opens the store (never creating or changing anything), so the node using it
    must be stopped first. Exits 0 and prints the height and state root when the
    store is consistent; otherwise prints what is wrong and exits 1.
    """
    try:
        genesis = Genesis.load(genesis_path)
        with open_store(path, chain_id=genesis.chain_id, genesis_hash=genesis.hash) as store:
            height = store.check_consistency()
            root = store.state_root()
    except (GenesisError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"ok: {path}: chain {genesis.chain_id}, height {height}, state root {root.hex()}")


def main() -> None:
    """Console-script entry point."""
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        sys.exit(130)
