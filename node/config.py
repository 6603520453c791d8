"""The node's configuration file (``config.toml``): parsing, validation and dumping.

The file is TOML, read with the standard library's :mod:`tomllib`, one table per
section: ``[node]``, ``[p2p]``, ``[rpc]``, ``[metrics]``, ``[mempool]``,
``[consensus]`` and ``[log]``. Every option has a default, so an empty file is a
valid configuration, and every option with a unit carries it in its name
(``_ms``, ``_bytes``). Paths in ``[node]`` are relative to the node's home, the
directory holding ``config.toml``.

Anything wrong (an unknown section or key, a wrong type, a value out of range) is
a :class:`ConfigError` whose message names the file, the section and the key,
e.g. ``config.toml: [mempool] max_txs: must be an integer in [1, 1000000], got "x"``.

:func:`dump_config` writes a configuration back as TOML (plain ``key = value``
lines) that :func:`load_config` reads to an equal value. ``configs/README.md``
documents every option; a test keeps it in step with the dataclasses below.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final

from ledger.genesis import NAME_PATTERN
from ledger.keys import PUBLIC_KEY_BYTES
from ledger.types import MAX_BLOCK_TXS, MAX_TX_BYTES
from p2p.config import Limits as PeerLimits
from p2p.config import PeerAddress, split_address

CONFIG_FILE_NAME: Final = "config.toml"
#: Default ports; ``radledger testnet`` gives node ``i`` these plus ``10 * i``.
DEFAULT_P2P_PORT: Final = 26600
DEFAULT_RPC_PORT: Final = 26601
DEFAULT_METRICS_PORT: Final = 26602
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
LOG_FORMATS: Final = ("text", "json")

_NAME_RE: Final = re.compile(NAME_PATTERN)
_KEY_HEX_RE: Final = re.compile(rf"[0-9a-fA-F]{{{2 * PUBLIC_KEY_BYTES}}}")
_PEER_LIMITS: Final = PeerLimits()
_MIB: Final = 1024 * 1024
_DAY_MS: Final = 86_400_000


class ConfigError(ValueError):
    """A configuration file is unreadable, not TOML, or holds a bad option."""


# ---- rendering values as TOML (used by dump_config and in error messages)

_ESCAPES: Final = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _toml_string(text: str) -> str:
    out = []
    for char in text:
        escaped = _ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_value(value: object) -> str:
    """``value`` as a TOML literal (bool, int, str, or a list/tuple of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return repr(value)  # only in error messages: tables, floats, dates


# ---- option specifications: each field's metadata["spec"] checks its value


@dataclass(frozen=True, slots=True)
class IntSpec:
    """An integer in ``[low, high]`` (a TOML bool is not an integer)."""

    low: int
    high: int

    def problem(self, value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer in [{self.low}, {self.high}]"
        if not self.low <= value <= self.high:
            return f"must be an integer in [{self.low}, {self.high}]"
        return None


@dataclass(frozen=True, slots=True)
class BoolSpec:
    def problem(self, value: object) -> str | None:
        return None if isinstance(value, bool) else "must be true or false"


@dataclass(frozen=True, slots=True)
class ChoiceSpec:
    choices: tuple[str, ...]

    def problem(self, value: object) -> str | None:
        if isinstance(value, str) and value in self.choices:
            return None
        return "must be one of " + ", ".join(toml_value(c) for c in self.choices)


@dataclass(frozen=True, slots=True)
class NameSpec:
    def problem(self, value: object) -> str | None:
        if isinstance(value, str) and _NAME_RE.fullmatch(value) is not None:
            return None
        return f"must be a name matching {NAME_PATTERN}"


@dataclass(frozen=True, slots=True)
class PathSpec:
    """A file or directory path; relative paths are relative to the node's home."""

    def problem(self, value: object) -> str | None:
        if isinstance(value, str) and value and "\x00" not in value:
            return None
        return "must be a non-empty path string"


def _address_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return "must be a string host:port"
    try:
        split_address(value)
    except ValueError:
        return "must be host:port with a port in [1, 65535]"
    return None


@dataclass(frozen=True, slots=True)
class AddressSpec:
    """``host:port``; with ``optional``, the empty string means "not set"."""

    optional: bool = False

    def problem(self, value: object) -> str | None:
        if self.optional and value == "":
            return None
        found = _address_problem(value)
        if found is not None and self.optional:
            return found + ' (or "" for none)'
        return found


def _peer_problem(entry: object) -> str | None:
    if not isinstance(entry, str):
        return "is not a string"
    key, sep, address = entry.partition("@")
    if not sep or _KEY_HEX_RE.fullmatch(key) is None or _address_problem(address) is not None:
        return 'is not "nodekeyhex@host:port" (64 hex digits, "@", host:port)'
    return None


def _key_problem(entry: object) -> str | None:
    if isinstance(entry, str) and _KEY_HEX_RE.fullmatch(entry) is not None:
        return None
    return f"is not a node public key ({2 * PUBLIC_KEY_BYTES} hex digits)"


@dataclass(frozen=True, slots=True)
class ListSpec:
    """A list of peers (``"peers"``) or of node public keys (``"keys"``), no repeats."""

    of: str

    def problem(self, value: object) -> str | None:
        if not isinstance(value, tuple):
            return "must be a list of strings"
        check = _peer_problem if self.of == "peers" else _key_problem
        seen: set[bytes] = set()
        for index, entry in enumerate(value):
            found = check(entry)
            if found is not None:
                return f"entry {index} ({toml_value(entry)}) {found}"
            key = bytes.fromhex(str(entry).partition("@")[0])
            if key in seen:
                return f"entry {index} ({toml_value(entry)}) repeats a node key"
            seen.add(key)
        return None


Spec = IntSpec | BoolSpec | ChoiceSpec | NameSpec | PathSpec | AddressSpec | ListSpec


def option(default: Any, spec: Spec) -> Any:
    """A dataclass field with a default and the spec that validates it."""
    return field(default=default, metadata={"spec": spec})


def spec_of(field_: dataclasses.Field[Any]) -> Spec:
    spec: Spec = field_.metadata["spec"]
    return spec


class Section:
    """Base of the section dataclasses: validates every field against its spec."""

    __slots__ = ()
    SECTION: ClassVar[str]

    def __post_init__(self) -> None:
        for field_ in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field_.name)
            found = spec_of(field_).problem(value)
            if found is not None:
                # A list names its bad entry itself; other values are shown in full.
                names_entry = isinstance(value, tuple) and found.startswith("entry ")
                shown = "" if names_entry else f", got {toml_value(value)}"
                raise self.error(field_.name, found + shown)
        self.check()

    def check(self) -> None:
        """Rules between options of one section; raise :meth:`error`."""

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"[{self.SECTION}] {key}: {problem}")


# ---- the sections


@dataclass(frozen=True, slots=True)
class NodeSection(Section):
    """Who this node is and where its files are (relative to the node's home)."""

    SECTION: ClassVar[str] = "node"

    moniker: str = option("node", NameSpec())
    genesis_file: str = option("genesis.json", PathSpec())
    node_key_file: str = option("node_key.json", PathSpec())
    validator_key_file: str = option("validator_key.json", PathSpec())
    data_dir: str = option("data", PathSpec())

    def resolve(self, home: str | os.PathLike[str], path: str) -> Path:
        """``path`` (one of this section's paths) made absolute against ``home``."""
        return Path(home) / path


@dataclass(frozen=True, slots=True)
class P2PSection(Section):
    """The peer layer: where we listen, whom we dial and accept, handshake and redial limits."""

    SECTION: ClassVar[str] = "p2p"

    listen_address: str = option(f"0.0.0.0:{DEFAULT_P2P_PORT}", AddressSpec())
    persistent_peers: tuple[str, ...] = option((), ListSpec("peers"))
    allowed_peer_keys: tuple[str, ...] = option((), ListSpec("keys"))
    handshake_timeout_ms: int = option(_PEER_LIMITS.handshake_timeout_ms, IntSpec(1, 600_000))
    max_pending_handshakes: int = option(_PEER_LIMITS.max_pending_handshakes, IntSpec(1, 10_000))
    max_pending_handshakes_per_ip: int = option(
        _PEER_LIMITS.max_pending_handshakes_per_ip, IntSpec(1, 10_000)
    )
    max_clock_skew_ms: int = option(_PEER_LIMITS.max_clock_skew_ms, IntSpec(0, 3_600_000))
    heartbeat_ms: int = option(_PEER_LIMITS.heartbeat_ms, IntSpec(0, 600_000))
    backoff_base_ms: int = option(_PEER_LIMITS.backoff_base_ms, IntSpec(1, 600_000))
    backoff_cap_ms: int = option(_PEER_LIMITS.backoff_cap_ms, IntSpec(1, _DAY_MS))
    backoff_reset_after_ms: int = option(_PEER_LIMITS.backoff_reset_after_ms, IntSpec(0, _DAY_MS))
    ban_seconds: int = option(_PEER_LIMITS.ban_seconds, IntSpec(0, 86_400 * 30))
    socket_buffer_bytes: int = option(_PEER_LIMITS.socket_buffer_bytes, IntSpec(0, 64 * _MIB))

    def check(self) -> None:
        if 0 < self.socket_buffer_bytes < 16 * 1024:
            raise self.error(
                "socket_buffer_bytes",
                f"must be 0 (the kernel's autotuning) or >= 16384, got {self.socket_buffer_bytes}",
            )
        if self.backoff_cap_ms < self.backoff_base_ms:
            raise self.error(
                "backoff_cap_ms",
                f"must be >= backoff_base_ms ({self.backoff_base_ms}), got {self.backoff_cap_ms}",
            )

    @property
    def listen(self) -> tuple[str, int]:
        return split_address(self.listen_address)

    def peer_addresses(self) -> tuple[PeerAddress, ...]:
        """``persistent_peers`` as the peer layer's :class:`PeerAddress` values."""
        peers = []
        for entry in self.persistent_peers:
            key, _, address = entry.partition("@")
            peers.append(PeerAddress(bytes.fromhex(key), address))
        return tuple(peers)

    def allowed_keys(self) -> frozenset[bytes]:
        return frozenset(bytes.fromhex(key) for key in self.allowed_peer_keys)

    def apply_to(self, limits: PeerLimits) -> PeerLimits:
        """``limits`` (e.g. ``Limits.for_params(genesis.params)``) with this section's values."""
        return dataclasses.replace(
            limits,
            handshake_timeout_ms=self.handshake_timeout_ms,
            max_pending_handshakes=self.max_pending_handshakes,
            max_pending_handshakes_per_ip=self.max_pending_handshakes_per_ip,
            max_clock_skew_ms=self.max_clock_skew_ms,
            heartbeat_ms=self.heartbeat_ms,
            backoff_base_ms=self.backoff_base_ms,
            backoff_cap_ms=self.backoff_cap_ms,
            backoff_reset_after_ms=self.backoff_reset_after_ms,
            ban_seconds=self.ban_seconds,
            socket_buffer_bytes=self.socket_buffer_bytes,
        )


@dataclass(frozen=True, slots=True)
class RPCSection(Section):
    """The client API: queries and transaction submission."""

    SECTION: ClassVar[str] = "rpc"

    listen_address: str = option(f"127.0.0.1:{DEFAULT_RPC_PORT}", AddressSpec())
    write_listen_address: str = option("", AddressSpec(optional=True))
    max_body_bytes: int = option(_MIB, IntSpec(1024, 64 * _MIB))
    max_wait_ms: int = option(30_000, IntSpec(0, 600_000))

    def check(self) -> None:
        if self.write_listen_address == self.listen_address:
            raise self.error(
                "write_listen_address",
                f'equals listen_address; use "" to serve writes there, got '
                f"{toml_value(self.write_listen_address)}",
            )

    @property
    def write_address(self) -> str:
        """Where transaction submission is served: its own address, or ``listen_address``."""
        return self.write_listen_address or self.listen_address


@dataclass(frozen=True, slots=True)
class MetricsSection(Section):
    """The Prometheus endpoint (``/metrics``)."""

    SECTION: ClassVar[str] = "metrics"

    enabled: bool = option(True, BoolSpec())
    listen_address: str = option(f"127.0.0.1:{DEFAULT_METRICS_PORT}", AddressSpec())


@dataclass(frozen=True, slots=True)
class MempoolSection(Section):
    """Bounds of the pool of transactions waiting for a block."""

    SECTION: ClassVar[str] = "mempool"

    max_txs: int = option(10_000, IntSpec(1, 1_000_000))
    max_bytes: int = option(64 * _MIB, IntSpec(MAX_TX_BYTES, 16 * 1024 * _MIB))
    max_txs_per_signer: int = option(1_000, IntSpec(1, 1_000_000))
    max_tx_bytes: int = option(32 * 1024, IntSpec(256, MAX_TX_BYTES))
    relay_delay_ms: int = option(2_000, IntSpec(0, 600_000))

    def check(self) -> None:
        if self.max_txs_per_signer > self.max_txs:
            raise self.error(
                "max_txs_per_signer",
                f"must be <= max_txs ({self.max_txs}), got {self.max_txs_per_signer}",
            )


@dataclass(frozen=True, slots=True)
class ConsensusSection(Section):
    """How this node proposes blocks when it is the primary."""

    SECTION: ClassVar[str] = "consensus"

    max_batch_delay_ms: int = option(50, IntSpec(0, 60_000))
    create_empty_blocks: bool = option(True, BoolSpec())
    empty_block_interval_ms: int = option(1_000, IntSpec(1, _DAY_MS))
    max_block_txs: int = option(1_000, IntSpec(1, MAX_BLOCK_TXS))


@dataclass(frozen=True, slots=True)
class LogSection(Section):
    SECTION: ClassVar[str] = "log"

    level: str = option("info", ChoiceSpec(LOG_LEVELS))
    format: str = option("text", ChoiceSpec(LOG_FORMATS))


SECTION_TYPES: Final[tuple[type[Section], ...]] = (
    NodeSection,
    P2PSection,
    RPCSection,
    MetricsSection,
    MempoolSection,
    ConsensusSection,
    LogSection,
)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """A whole ``config.toml``: one attribute per section, named like the section."""

    node: NodeSection = field(default_factory=NodeSection)
    p2p: P2PSection = field(default_factory=P2PSection)
    rpc: RPCSection = field(default_factory=RPCSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    mempool: MempoolSection = field(default_factory=MempoolSection)
    consensus: ConsensusSection = field(default_factory=ConsensusSection)
    log: LogSection = field(default_factory=LogSection)

    def __post_init__(self) -> None:
        listeners = [
            ("p2p", "listen_address", self.p2p.listen_address),
            ("rpc", "listen_address", self.rpc.listen_address),
            ("rpc", "write_listen_address", self.rpc.write_listen_address),
        ]
        if self.metrics.enabled:
            listeners.append(("metrics", "listen_address", self.metrics.listen_address))
        taken: dict[str, str] = {}
        for section, key, address in listeners:
            if not address:
                continue
            if address in taken:
                raise ConfigError(
                    f"[{section}] {key}: {toml_value(address)} is already used by {taken[address]}"
                )
            taken[address] = f"[{section}] {key}"

    @classmethod
    def default(cls, moniker: str = "node") -> NodeConfig:
        """Every option at its default, with the given moniker."""
        return cls(node=NodeSection(moniker=moniker))


def _section_from_table(cls: type[Section], table: Mapping[str, Any]) -> Section:
    known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(
                f"[{cls.SECTION}] {key}: unknown key (known keys: {', '.join(known)})"
            )
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def parse_config(text: str) -> NodeConfig:
    """Parse TOML text; :class:`ConfigError` (without a file name) for any problem."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}") from None
    by_name = {cls.SECTION: cls for cls in SECTION_TYPES}
    sections: dict[str, Section] = {}
    for name, table in document.items():
        cls = by_name.get(name)
        if cls is None:
            raise ConfigError(
                f"[{name}]: unknown section (known sections: {', '.join(by_name)})"
                if isinstance(table, dict)
                else f"{name}: unknown top-level key; options belong in a [section]"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"[{name}]: must be a table, got {toml_value(table)}")
        sections[name] = _section_from_table(cls, table)
    return NodeConfig(**sections)  # type: ignore[arg-type]


def load_config(path: str | os.PathLike[str]) -> NodeConfig:
    """Read and validate a ``config.toml``; every error message starts with the file name."""
    source = Path(path)
    try:
        text = source.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read config file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not valid TOML: the file is not UTF-8") from None
    try:
        return parse_config(text)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def dump_config(config: NodeConfig) -> str:
    """``config`` as TOML, every option written out; :func:`load_config` reads it back equal."""
    lines = ["# radledger node configuration. Every option is documented in configs/README.md."]
    for section_field in dataclasses.fields(config):
        section = getattr(config, section_field.name)
        lines.append("")
        lines.append(f"[{section_field.name}]")
        for option_field in dataclasses.fields(section):
            value = getattr(section, option_field.name)
            if isinstance(value, tuple) and value:
                # One entry a line: peer lists are long.
                lines.append(f"{option_field.name} = [")
                lines.extend(f"    {toml_value(item)}," for item in value)
                lines.append("]")
            else:
                lines.append(f"{option_field.name} = {toml_value(value)}")
    return "\n".join(lines) + "\n"
