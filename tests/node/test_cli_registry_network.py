"""Every researcher write command, run as a researcher runs it, against a real network.

tests/node/test_cli_registry.py covers the refusals and the offline commands
(its node runs no consensus). Here one 4-process network, started once for the
module, commits what the commands send: member enroll/revoke, dataset
derive, subject link, consent grant/revoke, access log, trial
register/amend/result, ``submit --json``, the refusals of a sealed dataset and
of ``--supersedes`` on an existing id, and ``verify``'s warning that a newer
version exists. Each test reads the committed effect back through the query
RPC, not through the command's own output.

Tests use their own dataset and trial ids, so they do not depend on each
other's order; the module fixture enrols the members they share.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
from click.testing import CliRunner, Result

from imaging import synthetic
from ledger.keys import SigningKey, write_key_file
from node.cli import cli
from node.testnet import ADMIN_KEY_FILE, create_testnet, ports
from tests.node.test_network_processes import Network, _free_base, wait_for

_PROXY_VARIABLES: Final = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy")

RESEARCHER: Final = SigningKey(b"\xa1" * 32)  # site0
COLLEAGUE: Final = SigningKey(b"\xa2" * 32)  # site1
SUBJECT: Final = SigningKey(b"\xa3" * 32)  # a patient's pseudonymous key


@dataclass(frozen=True)
class Site:
    """The running network and the key files the commands are given."""

    net: Network
    root: Path
    admin: Path  # site0's admin key file
    researcher: Path
    colleague: Path
    subject: Path
    document: Path  # a protocol/results document, recorded by its SHA-256

    @property
    def rpc(self) -> str:
        return f"http://127.0.0.1:{ports(self.net.base, 0)[1]}"

    def get(self, path: str) -> Any:
        return self.net.get(0, path)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib would send 127.0.0.1 requests to a proxy named in the environment."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("RADLEDGER_RPC", raising=False)


def run(site: Site, *args: str | Path) -> Result:
    """A command against node0, as typed (exceptions become exit codes)."""
    return CliRunner().invoke(cli, [*(str(a) for a in args), "--rpc", site.rpc])


def committed(result: Result) -> dict[str, Any]:
    """The ``--json`` answer of a write that must have been committed."""
    assert result.exit_code == 0, result.output
    answer: dict[str, Any] = json.loads(result.stdout)
    assert set(answer) == {"kind", "hash", "height"}
    assert answer["height"] >= 1
    return answer


def refused(result: Result) -> str:
    """The one ``Error:`` line of a command that must have been refused."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("Error: ")
    return line


def _key_file(path: Path, key: SigningKey) -> Path:
    write_key_file(path, key)
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("cli-network")
    base = _free_base()
    net = Network(create_testnet(root / "net", 4, base_port=base), base)
    for i in range(4):
        net.start(i)
    try:
        wait_for(lambda: min(net.height(i) for i in range(4)) >= 1, 60, "the first block")
        document = root / "protocol-v1.pdf"
        document.write_bytes(b"%PDF-1.7 synthetic protocol, version 1")
        made = Site(
            net=net,
            root=root,
            admin=net.net.nodes[0].home / ADMIN_KEY_FILE,
            researcher=_key_file(root / "researcher.json", RESEARCHER),
            colleague=_key_file(root / "colleague.json", COLLEAGUE),
            subject=_key_file(root / "subject.json", SUBJECT),
            document=document,
        )
        for key, site_id, admin in (
            (RESEARCHER, "site0", made.admin),
            (COLLEAGUE, "site1", net.net.nodes[1].home / ADMIN_KEY_FILE),
        ):
            committed(
                run(
                    made,
                    *("member", "enroll", "--key", admin, "--member", key.public_key.hex()),
                    *("--site", site_id, "--role", "researcher", "--json"),
                    *("--reason", "joins the nodule study"),
                )
            )
        yield made
    finally:
        net.stop_all()


def _study(site: Site, name: str, *, seed: int, instances: int = 3) -> Path:
    folder = site.root / name
    synthetic.write_study(
        folder, synthetic.StudySpec(seed=seed, instances=instances, rows=8, columns=8)
    )
    return folder


def _submit(site: Site, dataset: str, study: Path, *extra: str) -> Result:
    return run(
        site,
        *("submit", "--key", site.researcher, "--dataset", dataset, "--jobs", "1"),
        *("--reason", "baseline CTs", "--manifest", site.root / f"{dataset}.manifest.json"),
        *extra,
        study,
    )


def _registered(site: Site, dataset: str, *, seed: int) -> Path:
    study = _study(site, dataset, seed=seed)
    assert _submit(site, dataset, study).exit_code == 0
    return study


# --------------------------------------------------------------------------- members


def test_member_enroll_and_revoke_commit_and_show_in_the_history(site: Site) -> None:
    enrolled = site.get(f"/v1/members/{RESEARCHER.public_key.hex()}")  # by the fixture
    assert enrolled["standing"]["active"] is True
    assert enrolled["standing"]["role"] == "researcher"
    assert enrolled["membership"][0]["reason"] == "joins the nodule study"

    leaver = SigningKey(b"\xa9" * 32).public_key.hex()
    enroll = run(
        site,
        *("member", "enroll", "--key", site.admin, "--member", leaver, "--site", "site0"),
        *("--role", "auditor", "--reason", "quality audit 2026"),
    )
    assert enroll.exit_code == 0, enroll.output
    assert enroll.stdout.startswith("member.enroll committed at height ")
    revoke = committed(
        run(
            site,
            *("member", "revoke", "--key", site.admin, "--member", leaver, "--json"),
            *("--reason", "audit finished"),
        )
    )
    history = site.get(f"/v1/members/{leaver}")
    assert history["standing"] == {
        "site": "site0",
        "role": "auditor",
        "active": False,
        "since_height": revoke["height"],
    }
    assert [(m["event"], m["reason"]) for m in history["membership"]] == [
        ("enrolled", "quality audit 2026"),
        ("revoked", "audit finished"),
    ]
    assert history["membership"][1]["tx"] == revoke["hash"]


# --------------------------------------------------------------------------- datasets


def test_submit_json_registers_and_writes_the_manifest(site: Site) -> None:
    study = _study(site, "cli-ct-json", seed=61, instances=4)
    result = _submit(site, "cli-ct-json", study, "--json")
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()  # nothing but the JSON answer on stdout
    answer = json.loads(line)
    manifest = site.root / "cli-ct-json.manifest.json"
    assert answer == {"dataset": "cli-ct-json", "instances": 4, "manifest": str(manifest)}
    written = json.loads(manifest.read_text())
    (series,) = written["series"]
    (tx,) = series["transactions"]
    info = site.get("/v1/datasets/cli-ct-json")
    assert info["owner"] == RESEARCHER.public_key.hex()
    (registered,) = info["series"]
    assert registered["uid"] == series["series_instance_uid"]
    assert registered["series_root"] == series["root"]
    assert registered["complete"] is True
    assert info["created"]["tx"] == tx["hash"]
    assert info["created"]["reason"] == "baseline CTs"


def test_dataset_derive_links_the_parent_and_seals_it(site: Site) -> None:
    _registered(site, "cli-ct-parent", seed=62)
    container = site.root / "model.tar"
    container.write_bytes(b"nnU-Net container v2")
    output_digest = hashlib.sha256(b"the masks").hexdigest()
    derived = committed(
        run(
            site,
            *("dataset", "derive", "--key", site.researcher, "--dataset", "cli-seg"),
            *("--parent", "cli-ct-parent", "--transformation", "segmentation"),
            *("--code-version", container, "--output", output_digest, "--json"),
            *("--reason", "lung masks"),
        )
    )
    info = site.get("/v1/datasets/cli-seg")
    assert info["kind"] == "derived"
    assert info["derivation"] == {
        "parents": ["cli-ct-parent"],
        "children": [],
        "transformation": "segmentation",
        "code_version": hashlib.sha256(container.read_bytes()).hexdigest(),
        "output": output_digest,
    }
    assert info["created"]["tx"] == derived["hash"]
    parent = site.get("/v1/datasets/cli-ct-parent")
    assert parent["derivation"]["children"] == ["cli-seg"]
    assert parent["sealed"]["cause"] == "derived from"
    assert parent["sealed"]["tx"] == derived["hash"]


def test_a_sealed_dataset_takes_no_new_series_and_verify_names_the_newer_version(
    site: Site,
) -> None:
    study = _registered(site, "cli-ct-sealed", seed=63)
    committed(
        run(
            site,
            *("access", "log", "--key", site.researcher, "--dataset", "cli-ct-sealed"),
            *("--purpose", "research", "--json", "--reason", "first read"),
        )
    )
    more = _study(site, "cli-ct-sealed-more", seed=64)
    line = refused(_submit(site, "cli-ct-sealed", more))
    assert "dataset cli-ct-sealed is sealed (accessed at height " in line
    assert "--supersedes cli-ct-sealed" in line
    # --supersedes on an id that exists is refused, not ignored
    line = refused(_submit(site, "cli-ct-sealed", more, "--supersedes", "cli-ct-json"))
    assert "dataset cli-ct-sealed already exists" in line
    assert "--supersedes cli-ct-json applies only when creating a dataset" in line
    # the new version, under a new id
    assert _submit(site, "cli-ct-sealed-v2", study, "--supersedes", "cli-ct-sealed").exit_code == 0
    assert site.get("/v1/datasets/cli-ct-sealed")["versions"]["superseded_by"] == "cli-ct-sealed-v2"
    checked = run(site, "verify", "--dataset", "cli-ct-sealed", "--jobs", "1", study)
    assert checked.exit_code == 0, checked.output  # the old version still matches its files
    assert "superseded by cli-ct-sealed-v2" in checked.stderr
    as_json = run(site, "verify", "--dataset", "cli-ct-sealed", "--jobs", "1", "--json", study)
    assert json.loads(as_json.stdout.splitlines()[-1])["superseded_by"] == "cli-ct-sealed-v2"


# --------------------------------------------------------------------- subjects, consent, access


SECRET: Final = bytes(range(32))  # site0's secret for SUBJECT (one per patient)
PSEUDONYM: Final = "PSN-0042"


def _link(site: Site, dataset: str) -> dict[str, Any]:
    secret = site.root / "site0-psn-0042.secret"
    secret.write_bytes(SECRET)
    return committed(
        run(
            site,
            *("subject", "link", "--key", site.admin, "--subject", SUBJECT.public_key.hex()),
            *("--site", "site0", "--dataset", dataset, "--site-secret", secret),
            *("--pseudonym", PSEUDONYM, "--json", "--reason", "patient enrolled"),
        )
    )


def test_subject_link_commits_the_sites_commitment(site: Site) -> None:
    _registered(site, "cli-ct-linked", seed=65)
    linked = _link(site, "cli-ct-linked")
    tx = site.get(f"/v1/txs/{linked['hash']}")["tx"]
    assert tx["kind"] == "subject.link"
    body = tx["body"]
    # computed here independently: SHA-256 over the secret's bytes, then the pseudonym's UTF-8
    expected = hashlib.sha256(SECRET + PSEUDONYM.encode("utf-8")).hexdigest()
    assert body["commitment"] == {"$hex": expected}
    assert body["subject"] == {"$hex": SUBJECT.public_key.hex()}
    assert body["datasets"] == ["cli-ct-linked"]
    assert site.get("/v1/datasets/cli-ct-linked")["subjects"] == 1


def test_consent_grant_access_and_revoke_drive_authz(site: Site) -> None:
    _registered(site, "cli-ct-consent", seed=66)
    _link(site, "cli-ct-consent")
    me = RESEARCHER.public_key.hex()

    def authz() -> Result:
        return run(
            site, "authz", "--grantee", me, "--dataset", "cli-ct-consent", "--purpose", "research"
        )

    assert authz().exit_code == 1  # nobody consented yet
    grant = committed(
        run(
            site,
            *("consent", "grant", "--key", site.subject, "--grantee-kind", "member"),
            *("--grantee", me, "--site", "site0", "--dataset", "cli-ct-consent"),
            *("--purpose", "research", "--json", "--reason", "I agree to the study"),
        )
    )
    record = site.get(f"/v1/grants/{grant['hash']}")
    assert record["grantee"] == {"kind": "member", "id": me}
    assert record["scope"] == {"site": "site0", "datasets": ["cli-ct-consent"]}
    assert record["granted_height"] == grant["height"]
    allowed = authz()
    assert allowed.exit_code == 0, allowed.output
    answer = json.loads(allowed.stdout)
    assert answer["decision"] == "allow"
    assert answer["grants"] == [{"subject": SUBJECT.public_key.hex(), "grant": grant["hash"]}]

    access = committed(
        run(
            site,
            *("access", "log", "--key", site.researcher, "--dataset", "cli-ct-consent"),
            *("--purpose", "research", "--consent", grant["hash"], "--json"),
            *("--reason", "nodule detector run 14"),
        )
    )
    (logged,) = site.get("/v1/datasets/cli-ct-consent")["access"]
    assert (logged["tx"], logged["consent"], logged["purpose"]) == (
        access["hash"],
        grant["hash"],
        "research",
    )
    assert logged["reason"] == "nodule detector run 14"

    revoke = committed(
        run(
            site,
            *("consent", "revoke", "--key", site.subject, "--grant", grant["hash"]),
            *("--json", "--reason", "withdrawn"),
        )
    )
    assert site.get(f"/v1/grants/{grant['hash']}")["revoked_height"] == revoke["height"]
    denied = authz()
    assert denied.exit_code == 1
    assert json.loads(denied.stdout)["code"] == "missing_consent"


# --------------------------------------------------------------------------- trials


def test_trial_register_amend_and_result_build_the_timeline(site: Site) -> None:
    _registered(site, "cli-ct-trial", seed=67)
    endpoints = hashlib.sha256(b"endpoints v1").hexdigest()
    registered = committed(
        run(
            site,
            *("trial", "register", "--key", site.researcher, "--trial", "CLI-LUNG-01"),
            *("--protocol", site.document, "--endpoints", endpoints),
            *("--registry-id", "NCT01234567", "--dataset", "cli-ct-trial"),
            *("--investigator", COLLEAGUE.public_key.hex(), "--json"),
            *("--reason", "pre-registration before any image is read"),
        )
    )
    info = site.get("/v1/trials/CLI-LUNG-01")
    assert info["protocol"] == hashlib.sha256(site.document.read_bytes()).hexdigest()
    assert info["endpoints"] == endpoints
    assert info["registry_ids"] == ["NCT01234567"]
    assert info["datasets"] == ["cli-ct-trial"]
    assert sorted(info["investigators"]) == sorted(
        [RESEARCHER.public_key.hex(), COLLEAGUE.public_key.hex()]
    )
    assert site.get("/v1/datasets/cli-ct-trial")["sealed"]["tx"] == registered["hash"]

    committed(
        run(
            site,
            *("access", "log", "--key", site.colleague, "--dataset", "cli-ct-trial"),
            *("--purpose", "clinical-trial", "--trial", "CLI-LUNG-01", "--json"),
            *("--reason", "reading the baseline"),
        )
    )
    protocol_v2 = hashlib.sha256(b"protocol v2").hexdigest()
    amended = committed(
        run(
            site,
            *("trial", "amend", "--key", site.researcher, "--trial", "CLI-LUNG-01"),
            *("--protocol", protocol_v2, "--remove-investigator", COLLEAGUE.public_key.hex()),
            *("--json", "--reason", "amendment 1"),
        )
    )
    results = site.root / "results.pdf"
    results.write_bytes(b"%PDF-1.7 primary analysis")
    result = committed(
        run(
            site,
            *("trial", "result", "--key", site.researcher, "--trial", "CLI-LUNG-01"),
            *("--results", results, "--dataset", "cli-ct-trial", "--json"),
            *("--reason", "primary analysis"),
        )
    )
    info = site.get("/v1/trials/CLI-LUNG-01")
    assert info["protocol"] == protocol_v2
    assert info["investigators"] == [RESEARCHER.public_key.hex()]
    timeline = [(e["event"], e["flagged_after_access"], e["audit"]["tx"]) for e in info["timeline"]]
    assert [(event, flagged) for event, flagged, _ in timeline] == [
        ("register", False),
        ("first_access", False),
        ("amend", True),  # after the colleague read the data
        ("result", False),
    ]
    assert timeline[0][2] == registered["hash"]
    assert timeline[2][2] == amended["hash"]
    assert timeline[3][2] == result["hash"]
    assert info["timeline"][2]["investigators_removed"] == [COLLEAGUE.public_key.hex()]
    assert info["timeline"][3]["results"] == hashlib.sha256(results.read_bytes()).hexdigest()

    shown = run(site, "trial", "show", "CLI-LUNG-01")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == info
