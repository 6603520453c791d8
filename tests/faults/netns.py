"""A 4-node network whose nodes live in their own network namespaces, for partitions.

Each node runs in a network namespace of its own with one veth link to a bridge
in the host namespace (10.77.K.i+1, the test process at 10.77.K.254). The
nemesis cuts a link from node a to node b by adding a *blackhole route* to b in
a's namespace (no netfilter needed); a one-way cut drops a's packets to b only,
which for TCP breaks the link both ways, as a real one-way loss does. Healing
deletes the routes. Needs root and ``ip`` (iproute2); tests skip otherwise.
This kernel has no ``netem``, so delays and random drops are not offered.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from node.testnet import GeneratedNetwork, ports
from tests.node.test_network_processes import ROOT, Network

IP = shutil.which("ip")


def available() -> str | None:
    """Why namespaces cannot be used here, or ``None`` if they can."""
    if IP is None:
        return "iproute2's ip is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = subprocess.run([IP, "netns", "list"], capture_output=True, check=False)
    if probe.returncode != 0:
        return f"ip netns does not work here: {probe.stderr.decode(errors='replace').strip()}"
    return None


def _ip(*args: str, ns: str | None = None) -> None:
    assert IP is not None
    command = [IP, "netns", "exec", ns, IP, *args] if ns else [IP, *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")


def _quiet(*args: str) -> None:
    """An ``ip`` command whose failure is expected (cleaning what may not exist)."""
    subprocess.run([IP or "ip", *args], capture_output=True, check=False)


_NODE = (sys.executable, "-m", "node", "run", "--home")


class NamespacedNetwork(Network):
    """:class:`Network` whose node i listens on 10.77.K.(i+1) in namespace rlK-i."""

    def __init__(self, network: GeneratedNetwork, base: int, subnet: int) -> None:
        super().__init__(network, base)
        self.subnet = subnet
        self.bridge = f"rlbr{subnet}"
        self.cuts: set[tuple[int, int]] = set()
        self._rewrite_addresses()

    def ip(self, i: int) -> str:
        return f"10.77.{self.subnet}.{i + 1}"

    def ns(self, i: int) -> str:
        return f"rl{self.subnet}-{i}"

    def _rewrite_addresses(self) -> None:
        """Before the first start: every 127.0.0.1 address of node j becomes its own IP
        (genesis addresses, listen addresses, peers), in every file that names it."""
        files = [self.net.out / "genesis.json"]
        for node in self.net.nodes:
            files += [node.home / "genesis.json", node.home / "config.toml"]
        for path in files:
            text = path.read_text()
            for j in range(len(self.net.nodes)):
                for port in ports(self.base, j):
                    text = text.replace(f"127.0.0.1:{port}", f"{self.ip(j)}:{port}")
            path.write_text(text)

    def create(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"10.77.{self.subnet}.254/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i in range(len(self.net.nodes)):
            ns, host_end = self.ns(i), f"rl{self.subnet}h{i}"
            _ip("netns", "add", ns)
            _ip("link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", host_end, "master", self.bridge)
            _ip("link", "set", host_end, "up")
            _ip("addr", "add", f"{self.ip(i)}/24", "dev", "eth0", ns=ns)
            _ip("link", "set", "eth0", "up", ns=ns)
            _ip("link", "set", "lo", "up", ns=ns)

    def destroy(self) -> None:
        for i in range(len(self.net.nodes)):
            _quiet("netns", "del", self.ns(i))
        _quiet("link", "del", self.bridge)

    # ---------------------------------------------------------------- processes

    def start(self, i: int) -> None:
        assert IP is not None
        home = self.net.nodes[i].home
        log = (home / "node.log").open("ab")
        self.procs[i] = subprocess.Popen(
            [IP, "netns", "exec", self.ns(i), *_NODE, str(home)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def url(self, i: int, path: str) -> str:
        return f"http://{self.ip(i)}:{ports(self.base, i)[1]}{path}"

    # ---------------------------------------------------------------- the nemesis

    def cut(self, a: int, b: int) -> None:
        """a's packets to b are dropped (a one-way cut)."""
        if (a, b) not in self.cuts:
            _ip("route", "add", "blackhole", f"{self.ip(b)}/32", ns=self.ns(a))
            self.cuts.add((a, b))

    def cut_both(self, a: int, b: int) -> None:
        self.cut(a, b)
        self.cut(b, a)

    def isolate(self, a: int) -> None:
        for b in range(len(self.net.nodes)):
            if b != a:
                self.cut_both(a, b)

    def split(self, left: list[int], right: list[int]) -> None:
        for a in left:
            for b in right:
                self.cut_both(a, b)

    def heal(self) -> None:
        for a, b in sorted(self.cuts):
            _ip("route", "del", "blackhole", f"{self.ip(b)}/32", ns=self.ns(a))
        self.cuts.clear()


__all__ = ["NamespacedNetwork", "available"]
