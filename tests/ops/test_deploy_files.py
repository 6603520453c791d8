"""The deployment files: the systemd unit and the container image.

``configs/systemd/radledger.service`` must pass ``systemd-analyze verify`` and keep a low
``systemd-analyze security`` exposure, and it must hold every hardening directive the
operators rely on. Its seccomp rules (``SystemCallFilter=``, ``MemoryDenyWriteExecute=``,
``RestrictAddressFamilies=``) are then loaded with libseccomp, the way systemd loads
them, into a real 4-node network: the nodes must commit blocks and stop cleanly. A
dependency that needs a denied system call or writable-executable memory fails here,
not on a site's server. (This file is also the sandbox launcher: run as a script, it
loads the rules and executes its command.)

``configs/container/Containerfile`` is checked as text: what it runs, as whom, its health
check (executed against a local server), its ports, and that it copies every package
that pyproject.toml installs. No container engine is needed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import http.server
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "configs" / "systemd" / "radledger.service"
CONTAINERFILE = ROOT / "configs" / "container" / "Containerfile"
HOME = "/var/lib/radledger"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (Debian: apt install systemd)"
)

# --------------------------------------------------------------------------------------
# The systemd unit
# --------------------------------------------------------------------------------------


def _parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file, each a list of (key, value) in file order."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"directive outside a section: {line!r}"
        assert not line.endswith("\\"), "keep each directive on one line"
        key, sep, value = line.partition("=")
        assert sep, f"not a directive: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


UNIT_SECTIONS = _parse_unit(UNIT.read_text())


def _values(key: str, section: str = "Service") -> list[str]:
    return [v for k, v in UNIT_SECTIONS.get(section, []) if k == key]


def _value(key: str, section: str = "Service") -> str:
    values = _values(key, section)
    assert len(values) == 1, f"[{section}] {key}= must be set exactly once, found {values}"
    return values[0]


def _seconds(span: str) -> float:
    """A systemd time span ("30", "15s", "15min", "1h 30min") in seconds."""
    units = {"": 1.0, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+)\s*([a-z]*)", span):
        assert unit in units, f"time span {span!r}: unit {unit!r} not handled here"
        total += int(number) * units[unit]
    return total


HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "UMask": "0077",
    "LimitNOFILE": "65536",
    "KillSignal": "SIGTERM",
    "TimeoutStopSec": "30",
    "Restart": "on-failure",
    "User": "radledger",
    "Group": "radledger",
    "StateDirectory": "radledger",
    "StateDirectoryMode": "0700",
    "ReadWritePaths": HOME,
}


@pytest.mark.parametrize(("key", "expected"), sorted(HARDENING.items()))
def test_unit_sets(key: str, expected: str) -> None:
    assert _value(key) == expected


def test_unit_network_and_syscalls() -> None:
    families = _value("RestrictAddressFamilies").split()
    assert sorted(families) == ["AF_INET", "AF_INET6", "AF_UNIX"]
    allow, deny = _syscall_filter()
    assert allow == ["@system-service"]
    assert {"@privileged", "@resources"} <= set(deny)


def test_unit_runs_the_node_in_its_state_directory() -> None:
    argv = shlex.split(_value("ExecStart"))
    assert argv[0] == "/opt/radledger/bin/radledger"
    assert argv[1:4] == ["run", "--home", HOME]
    assert "--log-format" in argv
    assert argv[argv.index("--log-format") + 1] == "json"
    assert "/var/lib/" + _value("StateDirectory") == HOME
    assert _value("WorkingDirectory") == HOME


def test_unit_restarts_a_fatal_halt_only_a_few_times() -> None:
    """Exit 1 (fatal halt) is restarted, but a node that halts again at once must end up
    down: every restart falls inside the start-limit interval, so systemd gives up."""
    burst = int(_value("StartLimitBurst", "Unit"))
    interval = _seconds(_value("StartLimitIntervalSec", "Unit"))
    restart_sec = _seconds(_value("RestartSec"))
    assert 2 <= burst <= 5
    assert restart_sec >= 5
    # starts 1..burst happen within (burst - 1) * RestartSec (plus the run time of a
    # node that halts right after starting); the next one is refused
    assert (burst - 1) * restart_sec * 2 < interval


def _unit_for_this_host(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this virtualenv's radledger: verify checks
    that the binary exists, and /opt/radledger is not installed here."""
    radledger = Path(sys.executable).with_name("radledger")
    assert radledger.is_file(), f"{radledger} missing: install the project (make install)"
    text = UNIT.read_text()
    installed = "ExecStart=/opt/radledger/bin/radledger "
    assert installed in text
    copy = tmp_path / "radledger.service"
    copy.write_text(text.replace(installed, f"ExecStart={radledger} ", 1))
    return copy


@needs_systemd_analyze
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    unit = _unit_for_this_host(tmp_path)
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    ours = [line for line in result.stderr.splitlines() if "radledger" in line]
    assert result.returncode == 0, result.stderr
    assert ours == []


@needs_systemd_analyze
def test_systemd_analyze_security(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    unit = _unit_for_this_host(tmp_path)
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--no-pager", "--offline=yes", str(unit)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0 and "offline" in result.stderr:
        pytest.skip(f"this systemd-analyze has no --offline (needs systemd 250+): {result.stderr}")
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for radledger\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout
    # 1.2 today ("OK"); systemd calls < 4.0 "OK", < 2.0 keeps us well inside it
    assert float(match.group(1)) < 2.0, result.stdout


# --------------------------------------------------------------------------------------
# The unit's seccomp rules, loaded with libseccomp into a real network
# --------------------------------------------------------------------------------------

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4
SCMP_CMP_MASKED_EQ = 7
PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000
AF_MAX = 64
# systemd always allows these, whatever the filter says (systemd.exec(5))
ALWAYS_ALLOWED = ["execve", "exit", "exit_group", "getrlimit", "rt_sigreturn", "sigreturn"]


def _scmp_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class _ArgCmp(ctypes.Structure):
    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


def _libseccomp() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("seccomp")
    if name is None:
        return None
    lib = ctypes.CDLL(name, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_load.restype = ctypes.c_int
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    return lib


def _add_rule(lib: ctypes.CDLL, ctx: int, action: int, name: str, *cmps: _ArgCmp) -> None:
    number = int(lib.seccomp_syscall_resolve_name(name.encode()))
    if number < 0:  # not a system call of this architecture
        return
    array = (_ArgCmp * len(cmps))(*cmps) if cmps else None
    rc = int(lib.seccomp_rule_add_array(ctx, action, number, len(cmps), array))
    if rc != 0:
        raise OSError(-rc, f"seccomp rule for {name}")


def _load_policy(policy: dict[str, Any]) -> None:
    """Load the filters systemd would load for the policy (see ``_policy``). As systemd
    does, each concern is a filter of its own; the kernel applies the strictest answer."""
    lib = _libseccomp()
    assert lib is not None
    filters: list[int] = []
    if policy["allow"] is not None:
        ctx = int(lib.seccomp_init(_scmp_errno(policy["errno"])))
        for name in policy["allow"]:
            _add_rule(lib, ctx, SCMP_ACT_ALLOW, name)
        filters.append(ctx)
    if policy["memory_deny_write_execute"]:
        ctx = int(lib.seccomp_init(SCMP_ACT_ALLOW))
        deny = _scmp_errno(errno.EPERM)
        both = PROT_WRITE | PROT_EXEC
        _add_rule(lib, ctx, deny, "mmap", _ArgCmp(2, SCMP_CMP_MASKED_EQ, both, both))
        for name in ("mprotect", "pkey_mprotect"):
            _add_rule(lib, ctx, deny, name, _ArgCmp(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC))
        _add_rule(lib, ctx, deny, "shmat", _ArgCmp(2, SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC))
        filters.append(ctx)
    if policy["families"] is not None:
        ctx = int(lib.seccomp_init(SCMP_ACT_ALLOW))
        for family in range(AF_MAX):
            if family not in policy["families"]:
                _add_rule(
                    lib,
                    ctx,
                    _scmp_errno(errno.EAFNOSUPPORT),
                    "socket",
                    _ArgCmp(0, SCMP_CMP_EQ, family, 0),
                )
        filters.append(ctx)
    # the allow list last: it would deny the seccomp() calls that load the others
    for ctx in reversed(filters):
        rc = int(lib.seccomp_load(ctx))
        if rc != 0:
            raise OSError(-rc, "seccomp_load")


def _sandbox_main(argv: list[str]) -> NoReturn:
    """``python test_deploy_files.py POLICY_JSON -- COMMAND...``"""
    assert len(argv) >= 3, argv
    assert argv[1] == "--", argv
    _load_policy(json.loads(argv[0]))
    os.execvp(argv[2], argv[2:])


def _syscall_filter() -> tuple[list[str], list[str]]:
    """(allowed groups, denied groups) of the unit's SystemCallFilter= lines."""
    allow: list[str] = []
    deny: list[str] = []
    for value in _values("SystemCallFilter"):
        if value.startswith("~"):
            deny += value[1:].split()
        else:
            allow += value.split()
    return allow, deny


def _expand(names: list[str]) -> set[str]:
    """System call names of a list of names and @groups, as systemd-analyze lists them."""
    assert SYSTEMD_ANALYZE is not None
    out: set[str] = set()
    for name in names:
        if not name.startswith("@"):
            out.add(name)
            continue
        listing = subprocess.run(
            [SYSTEMD_ANALYZE, "syscall-filter", "--no-pager", name],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.splitlines()
        members = [line.strip() for line in listing[1:]]
        out |= _expand([m for m in members if m and not m.startswith("#")])
    return out


def _policy() -> dict[str, Any]:
    """The unit's seccomp rules, resolved to system call names and address families."""
    allow, deny = _syscall_filter()
    assert allow, "the unit's SystemCallFilter= must be an allow list"
    codes = {"EPERM": errno.EPERM, "EACCES": errno.EACCES}
    families = [getattr(socket, f) for f in _value("RestrictAddressFamilies").split()]
    return {
        "allow": sorted((_expand(allow) - _expand(deny)) | set(ALWAYS_ALLOWED)),
        "errno": codes[_value("SystemCallErrorNumber")],
        "memory_deny_write_execute": _value("MemoryDenyWriteExecute") == "yes",
        "families": [int(f) for f in families],
    }


needs_sandbox = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None
    or not sys.platform.startswith("linux")
    or ctypes.util.find_library("seccomp") is None,
    reason="needs Linux, systemd-analyze and libseccomp (Debian: systemd, libseccomp2)",
)


@pytest.fixture(scope="module")
def sandbox() -> list[str]:
    """argv prefix that runs a command under the unit's seccomp rules."""
    return [sys.executable, str(Path(__file__).resolve()), json.dumps(_policy()), "--"]


PROBE = """
import ctypes, json, mmap, os, socket
out = {}
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    out["wx_mmap"] = "allowed"
except OSError as exc:
    out["wx_mmap"] = exc.errno
libc = ctypes.CDLL(None, use_errno=True)
page = mmap.mmap(-1, 4096)
addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
out["mprotect_exec"] = libc.mprotect(ctypes.c_void_p(addr), 4096, 5) and ctypes.get_errno()
try:
    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW).close()
    out["netlink"] = "allowed"
except OSError as exc:
    out["netlink"] = exc.errno
try:
    os.setpriority(os.PRIO_PROCESS, 0, 1)
    out["setpriority"] = "allowed"
except OSError as exc:
    out["setpriority"] = exc.errno
a, b = socket.socketpair()
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
out["allowed_sockets"] = "ok"
print(json.dumps(out))
"""


@needs_sandbox
def test_sandbox_denies_what_the_unit_denies(sandbox: list[str]) -> None:
    """The launcher really applies the rules (else the network test proves nothing)."""
    result = subprocess.run(
        [*sandbox, sys.executable, "-c", PROBE],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "wx_mmap": errno.EPERM,
        "mprotect_exec": errno.EPERM,
        "netlink": errno.EAFNOSUPPORT,
        "setpriority": errno.EPERM,
        "allowed_sockets": "ok",
    }


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.loads(response.read())


@pytest.fixture
def sandboxed_network(
    sandbox: list[str], tmp_path: Path
) -> Iterator[list[tuple[subprocess.Popen[bytes], int]]]:
    """4 validators, each ``radledger run`` under the unit's rules: (process, RPC port)."""
    from node.testnet import ports  # noqa: PLC0415
    from tests.node.test_network_processes import _free_base  # noqa: PLC0415

    base = _free_base()
    subprocess.run(
        [
            *(sys.executable, "-m", "node", "testnet", "--validators", "4"),
            *("--out", str(tmp_path / "net"), "--base-port", str(base)),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=60,
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(4):
            home = tmp_path / "net" / f"node{i}"
            with (home / "node.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        [
                            *sandbox,
                            *(sys.executable, "-m", "node", "run", "--home", str(home)),
                            *("--log-format", "json"),
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        cwd=ROOT,
                    )
                )
        yield [(proc, ports(base, i)[1]) for i, proc in enumerate(procs)]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _logs(tmp_path: Path) -> list[str]:
    return [(tmp_path / "net" / f"node{i}" / "node.log").read_text() for i in range(4)]


@needs_sandbox
def test_network_runs_under_the_unit_seccomp_rules(
    sandboxed_network: list[tuple[subprocess.Popen[bytes], int]], tmp_path: Path
) -> None:
    procs = [proc for proc, _ in sandboxed_network]
    deadline = time.monotonic() + 60
    heights = [0] * len(procs)
    while min(heights) < 2:
        assert time.monotonic() < deadline, f"heights {heights} after 60 s: {_logs(tmp_path)}"
        for i, (proc, rpc) in enumerate(sandboxed_network):
            assert proc.poll() is None, f"node{i} exited with {proc.returncode}: {_logs(tmp_path)}"
            with contextlib.suppress(OSError):  # not listening yet
                heights[i] = int(_get_json(f"http://127.0.0.1:{rpc}/v1/status")["height"])
        time.sleep(0.2)
    for proc in procs:  # the nodes answer, so the launcher has loaded the rules
        status = Path(f"/proc/{proc.pid}/status").read_text()
        assert re.search(r"^Seccomp:\s+2$", status, re.MULTILINE), "no seccomp filter"
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.MULTILINE)
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    codes = [proc.wait(timeout=30) for proc in procs]
    logs = _logs(tmp_path)
    assert codes == [0, 0, 0, 0], logs
    for log in logs:
        assert "Operation not permitted" not in log
        assert "Traceback" not in log
        assert "stopped at height" in log


# --------------------------------------------------------------------------------------
# The container image
# --------------------------------------------------------------------------------------


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Containerfile, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        word, _, rest = pending.partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    assert not pending, "Containerfile ends inside a continuation"
    return out


INSTRUCTIONS = _instructions(CONTAINERFILE.read_text())


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in INSTRUCTIONS:
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _args(stage: list[tuple[str, str]], word: str) -> list[str]:
    return [rest for instr, rest in stage if instr == word]


def _resolve(image: str) -> str:
    """FROM's image with the global ARG defaults substituted."""
    defaults: dict[str, str] = {}
    for instr, rest in INSTRUCTIONS:
        if instr == "FROM":
            break
        if instr == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            defaults[name] = value
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: defaults[m.group(1) or m.group(2)], image)


def test_container_stages() -> None:
    build, runtime = _stages()
    assert [_resolve(_args(s, "FROM")[0].split()[0]) for s in (build, runtime)] == [
        "python:3.11-slim-bookworm"
    ] * 2
    assert _args(build, "FROM")[0].split()[1:] == ["AS", "build"]
    build_runs = " ".join(_args(build, "RUN"))
    assert "build-essential" in build_runs
    assert "libleveldb-dev" in build_runs
    assert "python -m venv /opt/radledger" in build_runs
    runtime_runs = " ".join(_args(runtime, "RUN"))
    assert "libleveldb1d" in runtime_runs
    assert "build-essential" not in runtime_runs
    assert "-dev" not in runtime_runs
    assert "COPY --from=build /opt/radledger /opt/radledger" in [
        f"COPY {a}" for a in _args(runtime, "COPY")
    ]


def test_container_installs_every_package_of_pyproject() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns: list[str] = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.removesuffix("*").removesuffix(".") for p in patterns}
    assert all((ROOT / p / "__init__.py").is_file() for p in packages)
    build = _stages()[0]
    sources: set[str] = set()
    for rest in _args(build, "COPY"):
        parts = [p for p in shlex.split(rest) if not p.startswith("--")]
        sources |= {p.rstrip("/") for p in parts[:-1]}
    needed = packages | {"pyproject.toml", "setup.py", pyproject["project"]["readme"]}
    assert sources == needed, f"copied {sorted(sources)}, pyproject needs {sorted(needed)}"
    assert "/opt/radledger/bin/pip install ." in " ".join(_args(build, "RUN"))


def _json_args(stage: list[tuple[str, str]], word: str) -> list[str]:
    values = _args(stage, word)
    assert len(values) == 1, f"{word} must appear once in the runtime stage"
    parsed = json.loads(values[0])
    assert isinstance(parsed, list), f"{word} must use the exec (JSON) form"
    return [str(p) for p in parsed]


def test_container_runs_the_node_as_non_root() -> None:
    runtime = _stages()[-1]
    argv = _json_args(runtime, "ENTRYPOINT") + _json_args(runtime, "CMD")
    assert argv[:4] == ["/opt/radledger/bin/radledger", "run", "--home", HOME]
    assert argv[argv.index("--log-format") + 1] == "json"
    user = _args(runtime, "USER")[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user == "10001"
    assert "useradd --system --uid 10001" in " ".join(_args(runtime, "RUN"))
    assert _args(runtime, "VOLUME") == [HOME]
    assert _args(runtime, "STOPSIGNAL") == ["SIGTERM"]


def test_container_exposes_the_default_ports() -> None:
    example = tomllib.loads((ROOT / "configs" / "example.toml").read_text())
    defaults = {
        int(example[section]["listen_address"].rsplit(":", 1)[1])
        for section in ("p2p", "rpc", "metrics")
    }
    exposed = {int(p) for rest in _args(_stages()[-1], "EXPOSE") for p in rest.split()}
    assert exposed == defaults == {26600, 26601, 26602}


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        assert self.path == "/v1/health"
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok": true}' if self.status == 200 else b'{"error": {}}')

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_container_healthcheck(status: int, healthy: bool) -> None:
    """The HEALTHCHECK command, run against a local server answering like the node."""
    rest = _args(_stages()[-1], "HEALTHCHECK")
    assert len(rest) == 1
    options, _, command = rest[0].partition("CMD ")
    assert "--timeout=" in options
    argv = json.loads(command)
    assert argv[0] == "/opt/radledger/bin/python"
    assert "curl" not in command
    assert "http://127.0.0.1:26601/v1/health" in command

    handler = type("Handler", (_Health,), {"status": status})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        local = [a.replace("127.0.0.1:26601", f"127.0.0.1:{port}") for a in argv[1:]]
        result = subprocess.run(
            [sys.executable, *local], check=False, capture_output=True, timeout=30
        )
    finally:
        server.shutdown()
        server.server_close()
    assert (result.returncode == 0) == healthy, result.stderr


if __name__ == "__main__":
    _sandbox_main(sys.argv[1:])
