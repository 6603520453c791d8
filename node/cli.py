"""The ``radledger`` command line.

Every command turns the typed errors of the layers below into one line on
stderr that names the file and what to do, and a non-zero exit; a traceback is
a bug.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ledger.errors import KeyFileError
from ledger.keys import SigningKey, write_key_file

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


def main() -> None:
    """Console-script entry point."""
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        sys.exit(130)
