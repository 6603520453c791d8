"""The ``radledger`` command line.

Every command turns the typed errors of the layers below into one line on
stderr that names the file and what to do, and a non-zero exit; a traceback is
a bug.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from ledger.errors import GenesisError, KeyFileError
from ledger.genesis import MIN_VALIDATORS, Genesis
from ledger.keys import SigningKey, write_key_file
from node import cli_genesis, cli_imaging, cli_registry, cli_status
from node.daemon import StartupError, load_home, run_node, setup_logging
from node.devnet import run_devnet
from node.sim import run as run_seed
from node.sim import run_many
from node.sim.runner import RunResult
from node.testnet import TestnetError, create_testnet
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


def _seed_range(text: str) -> range:
    first, sep, last = text.partition("-")
    try:
        low = int(first)
        high = int(last) if sep else low
    except ValueError:
        raise click.BadParameter(f"{text!r} is not A-B (e.g. 1-500) or one seed") from None
    if low < 0 or high < low:
        raise click.BadParameter(f"{text!r}: need 0 <= A <= B")
    return range(low, high + 1)


@cli.command()
@click.option(
    "--seeds",
    "seeds",
    required=True,
    metavar="A-B",
    help="Seeds to run, inclusive (e.g. 1-500), or one seed.",
)
@click.option(
    "--validators",
    default=4,
    show_default=True,
    type=click.IntRange(min=4),
    help="Validators per run (n; f = (n-1)//3).",
)
@click.option(
    "--byzantine",
    default=None,
    type=click.IntRange(min=0),
    help="Byzantine validators per run (at most f). Default: each seed chooses 0..f.",
)
@click.option(
    "--heights",
    default=8,
    show_default=True,
    type=click.IntRange(min=1),
    help="Height every honest replica must reach after the faults heal.",
)
@click.option("--verbose", "-v", is_flag=True, help="One line per seed.")
@click.option(
    "--transcript",
    is_flag=True,
    help="Print the full transcript of the first failing seed (or of the only seed).",
)
def sim(
    *,
    seeds: str,
    validators: int,
    byzantine: int | None,
    heights: int,
    verbose: bool,
    transcript: bool,
) -> None:
    """Run the deterministic consensus simulator over a range of seeds.

    Each seed is one run: a fault phase (partitions, loss, duplication, crashes and
    restarts, Byzantine validators), then a healed network in which every honest replica
    must reach --heights. Safety is checked after every step. Prints one summary line;
    exits 1 on any violation or liveness failure, naming the first failing seed and the
    command that replays it bit for bit.
    """
    # Imported here: the simulator pulls in the consensus core, which the other commands
    # (keygen, db check) must not depend on.

    seed_range = _seed_range(seeds)
    limit = (validators - 1) // 3
    if byzantine is not None and byzantine > limit:
        raise click.BadParameter(
            f"{validators} validators tolerate at most {limit} Byzantine", param_hint="--byzantine"
        )

    def show(result: RunResult) -> None:
        if verbose:
            state = "ok" if result.ok else "FAIL"
            click.echo(
                f"seed {result.seed}: {state} heights {list(result.committed_heights)} "
                f"view changes {result.view_changes} byzantine {list(result.behaviours)} "
                f"digest {result.transcript_digest[:16]}"
            )

    summary = run_many(
        seed_range, validators=validators, byzantine=byzantine, heights=heights, on_result=show
    )
    click.echo(summary.line())
    failed = summary.first_failure
    shown = failed.seed if failed is not None else seed_range[0]
    if transcript and (failed is not None or len(seed_range) == 1):
        replay = run_seed(
            shown, validators=validators, byzantine=byzantine, heights=heights, keep_transcript=True
        )
        for line in replay.transcript:
            click.echo(line)
    if failed is None:
        return
    click.echo(
        f"FAIL: {len(summary.failures)} of {summary.seeds_run} seeds failed; first: seed "
        f"{failed.seed}: {failed.first_problem()}",
        err=True,
    )
    click.echo(f"reproduce with: {failed.reproduce()}", err=True)
    raise SystemExit(1)


@cli.command()
@click.option(
    "--validators",
    "validators",
    required=True,
    type=int,
    help="Number of validators (at least 4: n >= 3f + 1 with f >= 1).",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to create the network in; must be new or empty.",
)
@click.option("--chain-id", "chain_id", default="radledger-testnet", show_default=True)
@click.option(
    "--base-port",
    "base_port",
    default=26600,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Node i listens on base+10i (p2p), base+10i+1 (rpc), base+10i+2 (metrics).",
)
def testnet(validators: int, out: Path, chain_id: str, base_port: int) -> None:
    """Create a local test network: genesis, keys (mode 0600) and config.toml per node.

    Writes OUT/genesis.json and OUT/node{i}/ (config.toml, genesis.json, node_key.json,
    validator_key.json, admin_key.json), all on 127.0.0.1, every node dialing all others.
    Refuses a non-empty OUT, so it never overwrites keys.
    """

    if validators < MIN_VALIDATORS:
        raise click.BadParameter(
            f"a BFT network needs at least {MIN_VALIDATORS} validators "
            f"(n >= 3f + 1 with f >= 1), got {validators}",
            param_hint="--validators",
        )
    try:
        network = create_testnet(out, validators, chain_id=chain_id, base_port=base_port)
    except TestnetError as exc:
        raise click.ClickException(str(exc)) from None
    for line in network.summary():
        click.echo(line)


@cli.command()
@click.option(
    "--home",
    "home",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The node's home directory (config.toml, keys, genesis.json, data/).",
)
@click.option(
    "--log-format",
    "log_format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Overrides [log] format.",
)
def run(home: Path, log_format: str | None) -> None:
    """Run a node until SIGTERM or SIGINT."""
    try:
        loaded = load_home(home)
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None
    setup_logging(loaded.config.log.level, log_format or loaded.config.log.format)
    try:
        code = asyncio.run(run_node(loaded))
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


@cli.command()
@click.option("--validators", default=4, show_default=True, type=click.IntRange(min=4))
@click.option(
    "--home",
    "home",
    default=Path("devnet"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the network lives; created on first use, reused afterwards.",
)
@click.option("--base-port", "base_port", default=26600, show_default=True, type=int)
@click.option(
    "--story/--no-story",
    default=True,
    show_default=True,
    help="Once the network runs, register a synthetic study through node0, verify it "
    "through node1 and check a receipt from node2 offline.",
)
def devnet(validators: int, home: Path, base_port: int, story: bool) -> None:
    """Start a local network of separate node processes; Ctrl-C stops it."""
    try:
        code = run_devnet(home, validators, base_port, story)
    except TestnetError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


cli.add_command(cli_status.status)
cli.add_command(cli_genesis.genesis)
cli.add_command(cli_imaging.fingerprint)
cli.add_command(cli_imaging.gate)
for _command in cli_registry.COMMANDS:
    cli.add_command(_command)


def main() -> None:
    """Console-script entry point."""
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        sys.exit(130)
