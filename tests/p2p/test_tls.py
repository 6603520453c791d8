"""TLS underneath the handshake: optional, in addition, never instead."""

from __future__ import annotations

import dataclasses
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.p2p.helpers import Nets, config_for, eventually, make_members, vote

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_two_nodes_over_tls(nets: Nets, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    members = make_members(2)
    configs = [
        dataclasses.replace(config_for(members, i), server_ssl=server, client_ssl=client)
        for i in range(2)
    ]
    (a, _), (b, rec_b) = nets.make(configs[0]), nets.make(configs[1])
    await a.start()
    await b.start()
    await eventually(lambda: a.stats().peers_connected == b.stats().peers_connected == 1)
    a.broadcast_consensus(vote(members[0], 1))
    await eventually(lambda: len(rec_b.consensus) == 1)
    assert a.stats().handshake_failures == {}


async def test_a_plain_dialer_cannot_reach_a_tls_node(nets: Nets, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    members = make_members(2)
    tls_node, _ = nets.make(dataclasses.replace(config_for(members, 0, dial=[]), server_ssl=server))
    plain, _ = nets.make(config_for(members, 1))
    await tls_node.start()
    await plain.start()
    await eventually(lambda: plain.stats().dial_failures >= 2)
    assert tls_node.stats().peers_connected == 0
