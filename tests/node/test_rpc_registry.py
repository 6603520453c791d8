"""The registry's read routes over RPC, answered from real certified blocks.

An unstarted node is built on a generated testnet home (as in test_rpc.py); the
tests commit blocks into its store by hand, exactly as consensus would: the
registry executes the transactions, the header carries the prospective state
root, and three of the four testnet validators sign COMMIT votes into the
certificate. So a receipt the node serves must verify against the genesis file.

The world every test sees (``World``), one block per step:

1. site0's admin enrolls RESEARCHER and OTHER (researchers at site0);
2. RESEARCHER registers part 0 of a synthetic series in dataset ``ct-2026``;
3. ... and part 1, which completes the series;
4. site0's admin links SUBJECT to the dataset;
5. SUBJECT grants consent to RESEARCHER (member) for research on the dataset;
6. RESEARCHER registers trial ``lung-trial-1`` on the dataset;
7. RESEARCHER logs a research access relying on the grant, for the trial.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from imaging import synthetic
from imaging.inspect import Series, group_series, inspect_file
from ledger.genesis import Genesis
from ledger.keys import SigningKey, load_key_file
from ledger.manifest import SeriesEntry, dataset_root
from ledger.receipt import Receipt, all_passed, verify
from ledger.types import Block, CommitCertificate, Tx, Vote, VoteKind
from node.daemon import load_home, open_data
from node.receipts import dataset_receipt, tx_proof
from node.researcher import register_bodies
from node.rpc import OPENAPI, Rpc
from node.rpc_registry import RegistryRoutes, registry_paths
from node.runtime import NodeRuntime
from node.testnet import ADMIN_KEY_FILE, VALIDATOR_KEY_FILE, create_testnet
from p2p import PeerConfig
from registry.app import BlockContext, Registry
from registry.errors import NotFound
from storage.leveldb import LevelDBStore

CHAIN: Final = "radledger-testnet"
QUORUM: Final = 3  # of the testnet's 4 validators
DATASET: Final = "ct-2026"
TRIAL: Final = "lung-trial-1"
#: Leaves per part follow from this limit: 14 synthetic instances make 2 parts.
MAX_TX_BYTES: Final = 3 * 1024
INSTANCES: Final = 14
BLOCK_INTERVAL_MS: Final = 1_000

RESEARCHER: Final = SigningKey(b"\x70" * 32)
OTHER: Final = SigningKey(b"\x71" * 32)  # enrolled, but nobody consented to it
SUBJECT: Final = SigningKey(b"\x80" * 32)
STRANGER: Final = SigningKey(b"\x90" * 32)  # never enrolled

Client = TestClient[web.Request, web.Application]


# --------------------------------------------------------------------------- a hand-made chain


@dataclass
class Ledger:
    """A testnet node's store, committed to by hand the way consensus would commit."""

    genesis: Genesis
    store: LevelDBStore
    validators: list[SigningKey]
    admins: list[SigningKey]
    registry: Registry
    nonces: dict[bytes, int] = field(default_factory=dict)

    @classmethod
    def open(cls, network_dir: Path, node: int = 0) -> Ledger:
        """Open the store of ``node`` in a testnet generated under ``network_dir``."""
        home = load_home(network_dir / f"node{node}")
        homes = sorted(p for p in network_dir.iterdir() if p.is_dir())
        return cls(
            genesis=home.genesis,
            store=open_data(home),
            validators=[load_key_file(h / VALIDATOR_KEY_FILE) for h in homes],
            admins=[load_key_file(h / ADMIN_KEY_FILE) for h in homes],
            registry=Registry(home.genesis),
        )

    @property
    def height(self) -> int:
        return self.store.latest_height()

    def time_of(self, height: int) -> int:
        return self.genesis.genesis_time_ms + height * BLOCK_INTERVAL_MS

    def tx(self, key: SigningKey, kind: str, body: dict[str, Any]) -> Tx:
        """A transaction for the next block, claiming that block's time."""
        nonce = self.nonces.get(key.public_key, 0) + 1
        self.nonces[key.public_key] = nonce
        claimed = {"time_ms": self.time_of(self.height + 1), **body}
        return Tx.create(key, chain_id=self.genesis.chain_id, kind=kind, nonce=nonce, body=claimed)

    def commit(self, *txs: Tx) -> Block:
        """Execute ``txs`` (all must be accepted), certify the block with a quorum, commit."""
        height = self.height + 1
        time_ms = self.time_of(height)
        writes, outcome = self.registry.execute(self.store.get, txs, BlockContext(height, time_ms))
        assert outcome == [None] * len(txs), outcome
        prev_hash = self.store.block_hash(height - 1) if height > 1 else self.genesis.hash
        assert prev_hash is not None
        block = Block.build(
            chain_id=self.genesis.chain_id,
            height=height,
            view=0,
            prev_hash=prev_hash,
            time_ms=time_ms,
            proposer=self.validators[0].public_key,
            state_root=self.store.prospective_root(writes),
            txs=txs,
        )
        votes = [
            Vote.create(
                key,
                chain_id=self.genesis.chain_id,
                kind=VoteKind.COMMIT,
                height=height,
                view=0,
                block_hash=block.hash,
            )
            for key in self.validators[:QUORUM]
        ]
        self.store.commit_block(block, CommitCertificate.from_votes(votes), writes)
        return block

    def register(
        self, key: SigningKey, dataset: str, series: Series, *, parts: int | None = None
    ) -> list[Tx]:
        """Register ``series`` in ``dataset``, one block per part (only the first ``parts``)."""
        bodies = register_bodies(
            dataset,
            series,
            reason="baseline registration",
            time_ms=0,  # replaced by the block's time
            max_tx_bytes=MAX_TX_BYTES,
        )
        committed = []
        for body in bodies[:parts]:
            del body["time_ms"]
            tx = self.tx(key, "dataset.register", body)
            self.commit(tx)
            committed.append(tx)
        return committed


def enroll(ledger: Ledger, *members: SigningKey, site: int = 0) -> Block:
    return ledger.commit(
        *(
            ledger.tx(
                ledger.admins[site],
                "member.enroll",
                {
                    "member": member.public_key,
                    "site": f"site{site}",
                    "role": "researcher",
                    "reason": "joins the imaging team",
                },
            )
            for member in members
        )
    )


def synthetic_series(folder: Path, *, seed: int, instances: int = INSTANCES) -> Series:
    """One synthetic de-identified CT series written under ``folder``, fingerprinted."""
    spec = synthetic.StudySpec(seed=seed, instances=instances, rows=8, columns=8)
    paths = synthetic.write_study(folder, spec)
    (series,) = group_series(inspect_file(p) for p in paths)
    return series


@dataclass(frozen=True)
class World:
    """What the blocks of this module's docstring recorded."""

    ledger: Ledger
    series: Series
    register_txs: tuple[Tx, ...]
    grant: Tx
    access: Tx


def build_world(ledger: Ledger, series: Series) -> World:
    enroll(ledger, RESEARCHER, OTHER)  # 1
    register_txs = ledger.register(RESEARCHER, DATASET, series)  # 2, 3
    assert len(register_txs) == 2, "the synthetic series must take two parts"
    ledger.commit(  # 4
        ledger.tx(
            ledger.admins[0],
            "subject.link",
            {
                "subject": SUBJECT.public_key,
                "site": "site0",
                "commitment": hashlib.sha256(b"site secret" + b"pseudonym-17").digest(),
                "datasets": [DATASET],
                "reason": "patient enrolled in the cohort",
            },
        )
    )
    grant = ledger.tx(
        SUBJECT,
        "consent.grant",
        {
            "grantee": {"kind": "member", "id": RESEARCHER.public_key.hex()},
            "scope": {"site": "site0", "datasets": [DATASET]},
            "purpose": "research",
            "expires_ms": None,
            "reason": "I agree to take part",
        },
    )
    ledger.commit(grant)  # 5
    ledger.commit(  # 6
        ledger.tx(
            RESEARCHER,
            "trial.register",
            {
                "trial": TRIAL,
                "registry_ids": ["NCT01234567"],
                "protocol": hashlib.sha256(b"protocol v1").digest(),
                "endpoints": hashlib.sha256(b"endpoints v1").digest(),
                "datasets": [DATASET],
                "investigators": [],
                "reason": "pre-registration",
            },
        )
    )
    access = ledger.tx(
        RESEARCHER,
        "access.log",
        {
            "dataset": DATASET,
            "purpose": "research",
            "consent": grant.hash,
            "trial": TRIAL,
            "reason": "segmentation study",
        },
    )
    ledger.commit(access)  # 7
    return World(ledger, series, tuple(register_txs), grant, access)


def unstarted_node(ledger: Ledger, network_dir: Path, node: int = 0) -> NodeRuntime:
    """The testnet's node over ``ledger``'s store, as the daemon builds it, but not started."""
    home = load_home(network_dir / f"node{node}")
    return NodeRuntime(
        genesis=home.genesis,
        validator_key=home.validator_key,
        store=ledger.store,
        peer_config=PeerConfig.from_genesis(home.genesis, home.node_key, listen_port=0),
    )


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Series:
    return synthetic_series(tmp_path_factory.mktemp("study"), seed=21)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    create_testnet(tmp_path / "net", 4, base_port=47300)
    opened = Ledger.open(tmp_path / "net")
    yield opened
    opened.store.close()


@pytest.fixture
def world(ledger: Ledger, series: Series) -> World:
    return build_world(ledger, series)


@pytest.fixture
async def client(world: World, tmp_path: Path) -> AsyncIterator[Client]:
    node = unstarted_node(world.ledger, tmp_path / "net")
    test_client: Client = TestClient(TestServer(Rpc(node).app))
    await test_client.start_server()
    yield test_client
    await test_client.close()


async def get_json(client: Client, path: str, status: int = 200) -> Any:
    response = await client.get(path)
    body = await response.json()
    assert response.status == status, body
    return body


async def error_of(client: Client, path: str, status: int) -> dict[str, Any]:
    """The error envelope of an answer that must fail with ``status``."""
    body = await get_json(client, path, status)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "detail"}
    error: dict[str, Any] = body["error"]
    return error


# --------------------------------------------------------------------------- the routes


def test_every_registry_route_is_served_and_described(ledger: Ledger, tmp_path: Path) -> None:
    described = set(registry_paths(lambda summary, responses, **extra: {}))
    node = unstarted_node(ledger, tmp_path / "net")
    served = {route.path for route in RegistryRoutes(node).routes()}
    assert served == described
    assert described <= set(OPENAPI["paths"])
    assert "/v1/receipts/{id}" in described


async def test_dataset_shows_owner_series_root_trial_subjects_and_access(
    client: Client, world: World
) -> None:
    answer = await get_json(client, f"/v1/datasets/{DATASET}")
    series = world.series
    assert answer["id"] == DATASET
    assert answer["owner"] == RESEARCHER.public_key.hex()
    assert answer["site"] == "site0"
    assert answer["kind"] == "registered"
    assert answer["created_height"] == 2
    assert answer["created"]["tx"] == world.register_txs[0].hash.hex()
    (entry,) = answer["series"]
    assert entry["uid"] == series.series_uid
    assert (entry["parts"], entry["parts_received"]) == (2, 2)
    assert entry["instances"] == entry["leaves_received"] == INSTANCES
    assert entry["series_root"] == series.root.hex()
    assert entry["complete"] is True
    assert entry["completed_height"] == 3
    assert entry["summary"] == series.summary.to_json()
    assert answer["complete_series"] == 1
    expected_root = dataset_root([SeriesEntry(series.series_uid, series.root, INSTANCES)])
    assert answer["dataset_root"] == expected_root.hex()
    assert answer["trials"] == [TRIAL]
    assert answer["subjects"] == 1
    (access,) = answer["access"]
    assert access["actor"] == RESEARCHER.public_key.hex()
    assert access["consent"] == world.grant.hash.hex()
    assert access["trial"] == TRIAL
    assert access["tx"] == world.access.hash.hex()
    assert access["height"] == 7
    assert answer["versions"] == {"supersedes": None, "superseded_by": None}
    sealed = answer["sealed"]  # by its first use: the trial naming it
    assert (sealed["cause"], sealed["action"], sealed["height"]) == (
        "in a trial",
        "trial.register",
        6,
    )


async def test_series_leaves_are_the_manifest_in_order(client: Client, world: World) -> None:
    uid = world.series.series_uid
    answer = await get_json(client, f"/v1/datasets/{DATASET}/series/{uid}/leaves")
    assert answer["dataset"] == DATASET
    assert answer["series"] == uid
    assert answer["leaves"] == [leaf.to_json() for leaf in world.series.leaves]


async def test_an_instance_is_found_with_its_leaf_and_series(client: Client, world: World) -> None:
    leaf = world.series.leaves[12]  # in the second part
    answer = await get_json(client, f"/v1/instances/{leaf.sop_instance_uid}")
    assert answer["sop_instance_uid"] == leaf.sop_instance_uid
    assert answer["locations"] == [
        {
            "dataset": DATASET,
            "series": world.series.series_uid,
            "index": 12,
            "leaf": leaf.to_json(),
            "series_root": world.series.root.hex(),
            "series_complete": True,
        }
    ]


async def test_a_grant_shows_who_granted_what_to_whom(client: Client, world: World) -> None:
    answer = await get_json(client, f"/v1/grants/{world.grant.hash.hex()}")
    assert answer["id"] == world.grant.hash.hex()
    assert answer["subject"] == SUBJECT.public_key.hex()
    assert answer["grantee"] == {"kind": "member", "id": RESEARCHER.public_key.hex()}
    assert answer["scope"] == {"site": "site0", "datasets": [DATASET]}
    assert answer["purpose"] == "research"
    assert answer["granted_height"] == 5
    assert answer["revoked_height"] is None
    assert answer["granted"]["tx"] == world.grant.hash.hex()


async def test_consent_now_and_before_it_was_granted(client: Client, world: World) -> None:
    query = f"grantee_kind=member&grantee={RESEARCHER.public_key.hex()}&dataset={DATASET}"
    now = await get_json(client, f"/v1/consent?{query}")
    assert now["height"] == 7
    assert now["time_ms"] == world.ledger.time_of(7)
    assert now["expiry_checked"] is True
    (grant,) = now["grants"]
    assert grant["id"] == world.grant.hash.hex()
    assert grant["covers_from_height"] == 5
    assert grant["state"] == "active"

    before = await get_json(client, f"/v1/consent?{query}&height=4")
    assert before["height"] == 4
    assert before["time_ms"] == world.ledger.time_of(4)
    assert [g["state"] for g in before["grants"]] == ["not_yet_granted"]

    at_grant = await get_json(client, f"/v1/consent?{query}&height=5")
    assert [g["state"] for g in at_grant["grants"]] == ["active"]

    future = await error_of(client, f"/v1/consent?{query}&height=8", 404)
    assert future["code"] == "not_found"
    assert "8" in future["message"]


async def test_authz_allows_the_consented_member_naming_the_deciding_grant(
    client: Client, world: World
) -> None:
    answer = await get_json(
        client,
        f"/v1/authz?grantee={RESEARCHER.public_key.hex()}&dataset={DATASET}&purpose=research",
    )
    assert answer["decision"] == "allow"
    assert answer["code"] == "consented"
    assert answer["role"] == "researcher"
    assert answer["sites"] == ["site0"]
    assert answer["grants"] == [
        {"subject": SUBJECT.public_key.hex(), "grant": world.grant.hash.hex()}
    ]
    assert answer["missing_subjects"] == []


@pytest.mark.parametrize(
    ("grantee", "purpose", "code"),
    [
        (OTHER, "research", "missing_consent"),  # a member nobody consented to
        (RESEARCHER, "teaching", "missing_consent"),  # consent is for research only
        (STRANGER, None, "not_a_member"),
    ],
    ids=["no-grant", "other-purpose", "not-a-member"],
)
async def test_authz_denies_and_says_why(
    client: Client, world: World, grantee: SigningKey, purpose: str | None, code: str
) -> None:
    path = f"/v1/authz?grantee={grantee.public_key.hex()}&dataset={DATASET}"
    answer = await get_json(client, path + (f"&purpose={purpose}" if purpose else ""))
    assert answer["decision"] == "deny"
    assert answer["code"] == code
    assert answer["grants"] == []
    if code == "missing_consent":
        assert answer["missing_subjects"] == [SUBJECT.public_key.hex()]


async def test_a_trial_shows_its_timeline(client: Client, world: World) -> None:
    answer = await get_json(client, f"/v1/trials/{TRIAL}")
    assert answer["id"] == TRIAL
    assert answer["owner"] == RESEARCHER.public_key.hex()
    assert answer["registry_ids"] == ["NCT01234567"]
    assert answer["datasets"] == [DATASET]
    assert answer["first_access_height"] == 7
    assert [(e["event"], e["height"]) for e in answer["timeline"]] == [
        ("register", 6),
        ("first_access", 7),
    ]
    assert answer["investigators"] == [RESEARCHER.public_key.hex()]  # its owner
    assert answer["timeline"][0]["investigators_added"] == [RESEARCHER.public_key.hex()]


@pytest.mark.parametrize(
    ("grantee", "purpose", "member"),
    [(RESEARCHER, "research", True), (OTHER, "research", False), (OTHER, None, False)],
    ids=["investigator", "not-an-investigator", "no-purpose"],
)
async def test_authz_for_a_project_says_whether_the_key_is_an_investigator(
    client: Client, world: World, grantee: SigningKey, purpose: str | None, member: bool
) -> None:
    path = f"/v1/authz?grantee={grantee.public_key.hex()}&dataset={DATASET}&project={TRIAL}"
    answer = await get_json(client, path + (f"&purpose={purpose}" if purpose else ""))
    assert answer["project"] == TRIAL
    assert answer["project_member"] is member


async def test_a_member_shows_enrolment_and_every_action(client: Client, world: World) -> None:
    answer = await get_json(client, f"/v1/members/{RESEARCHER.public_key.hex()}")
    assert answer["admin_of"] == []
    assert answer["standing"] == {
        "site": "site0",
        "role": "researcher",
        "active": True,
        "since_height": 1,
    }
    assert [(m["event"], m["site"], m["height"]) for m in answer["membership"]] == [
        ("enrolled", "site0", 1)
    ]
    assert [a["action"] for a in answer["actions"]] == [
        "dataset.register",
        "dataset.register",
        "trial.register",
        "access.log",
    ]


async def test_a_site_admin_is_a_member_by_genesis(client: Client, world: World) -> None:
    admin = world.ledger.admins[0].public_key.hex()
    answer = await get_json(client, f"/v1/members/{admin}")
    assert answer["admin_of"] == ["site0"]
    assert answer["standing"] is None
    assert [a["action"] for a in answer["actions"]] == [
        "member.enroll",
        "member.enroll",
        "subject.link",
    ]


# --------------------------------------------------------------------------- receipts


async def test_the_dataset_receipt_verifies_against_genesis(client: Client, world: World) -> None:
    receipt = Receipt.from_json(await get_json(client, f"/v1/receipts/{DATASET}"))
    steps = verify(receipt, world.ledger.genesis)
    assert all_passed(steps), [s for s in steps if not s.ok]
    assert receipt.dataset == DATASET
    assert receipt.instance is None
    assert [e.tx.hash for e in receipt.entries] == [tx.hash for tx in world.register_txs]
    assert [e.header.height for e in receipt.entries] == [2, 3]


async def test_an_instance_receipt_proves_the_instance(client: Client, world: World) -> None:
    leaf = world.series.leaves[4]
    answer = await get_json(client, f"/v1/receipts/{DATASET}?instance={leaf.sop_instance_uid}")
    receipt = Receipt.from_json(answer)
    steps = verify(receipt, world.ledger.genesis)
    assert all_passed(steps), [s for s in steps if not s.ok]
    assert receipt.instance is not None
    assert receipt.instance.leaf == leaf
    assert receipt.instance.index == 4
    assert receipt.instance.size == INSTANCES
    assert any(s.name.endswith("inclusion in series manifest") for s in steps)


async def test_a_receipt_for_an_instance_not_in_the_dataset_is_not_found(
    client: Client, world: World
) -> None:
    error = await error_of(client, f"/v1/receipts/{DATASET}?instance=1.2.3.4", 404)
    assert error["code"] == "not_found"
    assert "1.2.3.4" in error["message"]


# --------------------------------------------------------------------------- errors

UNKNOWN_KEY: Final = STRANGER.public_key.hex()


@pytest.mark.parametrize(
    "path",
    [
        "/v1/datasets/no-such-dataset",
        "/v1/datasets/no-such-dataset/series/1.2.3/leaves",
        f"/v1/datasets/{DATASET}/series/1.2.3/leaves",
        "/v1/instances/1.2.3.4",
        f"/v1/grants/{'ab' * 32}",
        "/v1/consent?grantee_kind=site&grantee=site1&dataset=no-such-dataset",
        f"/v1/authz?grantee={UNKNOWN_KEY}&dataset=no-such-dataset",
        "/v1/trials/no-such-trial",
        f"/v1/members/{UNKNOWN_KEY}",
        "/v1/receipts/no-such-dataset",
    ],
)
async def test_unknown_things_are_not_found(client: Client, path: str) -> None:
    error = await error_of(client, path, 404)
    assert error["code"] == "not_found"
    assert error["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/datasets/-leading-dash",
        f"/v1/datasets/{DATASET}/series/not-a-uid/leaves",
        "/v1/instances/1.2.x",
        "/v1/grants/xyz",
        "/v1/grants/abcd",  # hex, but not 32 bytes
        f"/v1/consent?grantee_kind=member&dataset={DATASET}",  # grantee missing
        f"/v1/consent?grantee_kind=robot&grantee=x&dataset={DATASET}",
        f"/v1/consent?grantee_kind=member&grantee=not-a-key&dataset={DATASET}",
        f"/v1/consent?grantee_kind=site&grantee=site0&dataset={DATASET}&height=-1",
        f"/v1/consent?grantee_kind=site&grantee=site0&dataset={DATASET}&height=two",
        f"/v1/authz?dataset={DATASET}",
        f"/v1/authz?grantee=zz&dataset={DATASET}",
        f"/v1/authz?grantee={UNKNOWN_KEY}&dataset={DATASET}&purpose=fun",
        f"/v1/authz?grantee={UNKNOWN_KEY}&dataset={DATASET}&project=-bad",
        "/v1/trials/-bad",
        "/v1/members/not-hex",
        f"/v1/members/{'ab' * 31}",
        "/v1/receipts/-bad",
    ],
)
async def test_malformed_arguments_are_invalid_queries(client: Client, path: str) -> None:
    error = await error_of(client, path, 400)
    assert error["code"] == "invalid_query"
    assert error["message"]


async def test_a_non_ascii_digit_height_is_an_invalid_query(client: Client) -> None:
    path = f"/v1/consent?grantee_kind=site&grantee=site0&dataset={DATASET}&height=%C2%B2"
    error = await error_of(client, path, 400)
    assert error["code"] == "invalid_query"


# --------------------------------------------------------------------------- node/receipts.py


def test_tx_proof_of_an_unknown_transaction_is_not_found(world: World) -> None:
    with pytest.raises(NotFound):
        tx_proof(world.ledger.store, bytes(32))


def test_tx_proof_carries_the_block_header_and_certificate(world: World) -> None:
    proof = tx_proof(world.ledger.store, world.grant.hash)
    block = world.ledger.store.block(5)
    assert block is not None
    assert proof.tx == world.grant
    assert proof.header == block.header
    assert (proof.index, proof.count) == (0, 1)
    assert proof.cert == world.ledger.store.certificate(5)
    assert len(proof.cert.signatures) == QUORUM


def _two_series(ledger: Ledger, tmp_path: Path) -> tuple[Series, Series, list[Tx], list[Tx]]:
    """``split`` (created the dataset, only part 0 of 2 committed) and ``whole`` (complete)."""
    split = synthetic_series(tmp_path / "split", seed=31)
    whole = synthetic_series(tmp_path / "whole", seed=32, instances=3)
    enroll(ledger, RESEARCHER)
    first = ledger.register(RESEARCHER, DATASET, split, parts=1)
    second = ledger.register(RESEARCHER, DATASET, whole)
    return split, whole, first, second


def test_a_receipt_holds_only_complete_series(ledger: Ledger, tmp_path: Path) -> None:
    """The first part of an unfinished series created the dataset, but only what the
    registry has checked whole is proven: the receipt holds the complete series."""
    split, whole, _first, second = _two_series(ledger, tmp_path)
    receipt = dataset_receipt(ledger.store, ledger.store, ledger.genesis, DATASET)
    assert [e.tx.hash for e in receipt.entries] == [second[0].hash]
    assert all_passed(verify(receipt, ledger.genesis))
    with pytest.raises(NotFound):  # its series is not complete yet
        dataset_receipt(
            ledger.store, ledger.store, ledger.genesis, DATASET, split.leaves[0].sop_instance_uid
        )
    proven = dataset_receipt(
        ledger.store, ledger.store, ledger.genesis, DATASET, whole.leaves[1].sop_instance_uid
    )
    assert proven.instance is not None
    assert proven.instance.series == whole.series_uid
    assert all_passed(verify(proven, ledger.genesis))
