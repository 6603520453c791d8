"""The researcher's story on a running 4-process network: register a synthetic study
through one node, verify it through another, tamper with a file and see exactly that
file reported, and check a receipt offline. Also the devnet's demonstration."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
from click.testing import CliRunner

from imaging.synthetic import StudySpec, write_study
from node.cli import cli
from node.story import run_story
from node.testnet import ADMIN_KEY_FILE, GENESIS_FILE, ports
from tests.node.test_network_processes import Network, network

__all__ = ["network"]  # the fixture, imported for this module's tests


def rpc(net: Network, node: int) -> str:
    return f"http://127.0.0.1:{ports(net.base, node)[1]}"


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_submit_verify_tamper_and_receipt(network: Network, tmp_path: Path) -> None:
    net = network
    study = tmp_path / "study"
    # 220 instances per series: more than one 32 KiB transaction holds, so two parts.
    write_study(study, StudySpec(seed=11, series=2, instances=220, rows=16, columns=16))
    home = net.net.nodes[0].home
    manifest = tmp_path / "manifest.json"
    code, out = invoke(
        "submit",
        "--key",
        str(home / ADMIN_KEY_FILE),
        "--dataset",
        "chest-ct-7",
        "--reason",
        "baseline registration for the nodule study",
        "--rpc",
        rpc(net, 0),
        "--manifest",
        str(manifest),
        "--jobs",
        "2",
        str(study),
    )
    assert code == 0, out
    assert "part 2/2" in out
    assert "440 instances in 2 series registered" in out
    written = json.loads(manifest.read_text())
    assert [len(s["instances"]) for s in written["series"]] == [220, 220]

    code, out = invoke("verify", "--dataset", "chest-ct-7", "--rpc", rpc(net, 1), str(study))
    assert code == 0, out
    assert "440 match -> all instances match" in out

    # Submitting the same study again registers nothing new.
    code, out = invoke(
        "submit",
        "--key",
        str(home / ADMIN_KEY_FILE),
        "--dataset",
        "chest-ct-7",
        "--reason",
        "again",
        "--rpc",
        rpc(net, 2),
        "--manifest",
        str(tmp_path / "again.json"),
        str(study),
    )
    assert code == 0, out
    assert out.count("already registered, same manifest") == 2

    victim = sorted((study / "s01").iterdir())[5]
    ds = pydicom.dcmread(victim)
    pixels = ds.pixel_array.copy()
    pixels[3, 3] += 7
    ds.PixelData = pixels.tobytes()
    ds.save_as(victim)
    code, out = invoke("verify", "--dataset", "chest-ct-7", "--rpc", rpc(net, 2), str(study))
    assert code == 1
    reported = [line for line in out.splitlines() if line and not line.startswith("MATCH")]
    assert len(reported) == 2, reported  # the file, then the summary
    assert reported[0].startswith("PIXELS CHANGED")
    assert str(victim) in reported[0]
    assert "439 match, 1 pixels changed -> MISMATCH" in reported[1]

    receipt = tmp_path / "receipt.json"
    sop = str(pydicom.dcmread(victim).SOPInstanceUID)
    code, out = invoke(
        "receipt", "get", "--dataset", "chest-ct-7", "--instance", sop, "--out", str(receipt),
        "--rpc", rpc(net, 3),
    )  # fmt: skip
    assert code == 0, out
    genesis = net.net.nodes[0].home.parent / GENESIS_FILE
    code, out = invoke("receipt", "verify", str(receipt), "--genesis", str(genesis))
    assert code == 0, out
    assert "receipt verified" in out
    assert "FAIL" not in out


def test_the_devnet_demonstration(network: Network) -> None:
    lines: list[str] = []
    home = network.net.nodes[0].home.parent
    run_story(home, [rpc(network, i) for i in range(3)], lines.append)
    assert [line[:3] for line in lines] == ["1/5", "2/5", "3/5", "4/5", "5/5"]
    assert "verified all 120 images" in lines[3]
    assert "verified it offline" in lines[4]
