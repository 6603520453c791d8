"""The handshake state machine and the encrypted channel (p2p/secure.py), sans I/O."""

from __future__ import annotations

import hashlib

import nacl.bindings
import nacl.public
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import DecodeError
from ledger.handshake import P2P_VERSION, Auth, Hello, Role, transcript_hash
from ledger.keys import SigningKey
from p2p.secure import (
    ChannelError,
    Handshake,
    HandshakeError,
    PeerPolicy,
    Refusal,
    SecureChannel,
    Session,
)

CHAIN = "radledger-secure-test"
NOW = 1_767_225_600_000
DIALER_KEY = SigningKey(b"\x11" * 32)
LISTENER_KEY = SigningKey(b"\x22" * 32)
STRANGER_KEY = SigningKey(b"\x33" * 32)
KNOWN = frozenset({DIALER_KEY.public_key, LISTENER_KEY.public_key})


def policy(key: SigningKey, *, chain: str = CHAIN, allowed: frozenset[bytes] = KNOWN) -> PeerPolicy:
    return PeerPolicy(chain, key, allowed, max_clock_skew_ms=30_000)


def run(dialer: Handshake, listener: Handshake) -> tuple[Session, Session]:
    """Drive both sides to completion, message by message."""
    (hello_d,) = dialer.start()
    assert listener.start() == []
    (hello_l,) = listener.receive(hello_d, NOW)
    (auth_d,) = dialer.receive(hello_l, NOW)
    (auth_l,) = listener.receive(auth_d, NOW)
    assert dialer.receive(auth_l, NOW) == []
    assert dialer.session is not None
    assert listener.session is not None
    return dialer.session, listener.session


def pair(
    *,
    dialer_key: SigningKey = DIALER_KEY,
    listener_key: SigningKey = LISTENER_KEY,
    expected: bytes | None = LISTENER_KEY.public_key,
) -> tuple[Handshake, Handshake]:
    dialer = Handshake(policy(dialer_key), Role.DIALER, NOW, expected_peer=expected)
    listener = Handshake(policy(listener_key), Role.LISTENER, NOW)
    return dialer, listener


def derive(shared: bytes, transcript: bytes, direction: bytes) -> bytes:
    """docs/P2P.md's key derivation, written out independently of p2p/secure.py."""
    person = b"radledger-" + direction
    return hashlib.blake2b(transcript, digest_size=32, key=shared, person=person).digest()


class ForgingDialer:
    """A dialer that builds its Auth by hand, to send what an honest one never would."""

    def __init__(self, chain: str = CHAIN, time_ms: int = NOW) -> None:
        self.eph = nacl.public.PrivateKey(b"\x05" * 32)
        self.hello = Hello(P2P_VERSION, chain, bytes(self.eph.public_key), time_ms, Role.DIALER)
        self.hello_bytes = self.hello.encode()

    def keys(self, listener_hello: bytes) -> tuple[bytes, SecureChannel]:
        peer = Hello.decode(listener_hello)
        shared = nacl.bindings.crypto_scalarmult(bytes(self.eph), peer.ephemeral)
        transcript = transcript_hash(self.hello_bytes, listener_hello)
        channel = SecureChannel(
            derive(shared, transcript, b"d2l"), derive(shared, transcript, b"l2d")
        )
        return transcript, channel

    def auth(self, listener_hello: bytes, key: SigningKey, *, claim: bytes | None = None) -> bytes:
        """A sealed Auth signed by ``key``, claiming the node key ``claim``."""
        transcript, channel = self.keys(listener_hello)
        auth = Auth.create(key, chain_id=CHAIN, transcript=transcript, role=Role.DIALER)
        if claim is not None:
            auth = Auth(claim, auth.sig)
        return channel.seal(auth.encode())


def refusal_of(handshake: Handshake, message: bytes) -> Refusal:
    with pytest.raises(HandshakeError) as info:
        handshake.receive(message, NOW)
    return info.value.reason


# --------------------------------------------------------------------------- success


def test_handshake_round_trip_and_channels_interoperate() -> None:
    dialer, listener = pair()
    d, ln = run(dialer, listener)
    assert d.peer_key == LISTENER_KEY.public_key
    assert d.role is Role.DIALER
    assert ln.peer_key == DIALER_KEY.public_key
    assert ln.role is Role.LISTENER
    for i in range(5):
        assert ln.channel.open(d.channel.seal(b"d2l %d" % i)) == b"d2l %d" % i
        assert d.channel.open(ln.channel.seal(b"l2d %d" % i)) == b"l2d %d" % i


def test_each_handshake_has_fresh_keys() -> None:
    first = run(*pair())[0].channel.seal(b"same plaintext")
    second = run(*pair())[0].channel.seal(b"same plaintext")
    assert first != second


def test_listener_reveals_nothing_before_the_dialer_authenticates() -> None:
    """The listener's first reply is only its Hello: no identity in it."""
    dialer, listener = pair()
    (hello_d,) = dialer.start()
    (hello_l,) = listener.receive(hello_d, NOW)
    assert LISTENER_KEY.public_key not in hello_l
    assert listener.session is None


# --------------------------------------------------------------------------- refusals


def test_malformed_hello() -> None:
    _, listener = pair()
    assert refusal_of(listener, b"\xa0") is Refusal.MALFORMED


def test_wrong_version() -> None:
    _, listener = pair()
    hello = Hello(P2P_VERSION + 1, CHAIN, b"\x09" * 32, NOW, Role.DIALER).encode()
    assert refusal_of(listener, hello) is Refusal.VERSION


def test_wrong_chain_id() -> None:
    _, listener = pair()
    hello = Hello(P2P_VERSION, "another-chain", b"\x09" * 32, NOW, Role.DIALER).encode()
    assert refusal_of(listener, hello) is Refusal.CHAIN_ID


@pytest.mark.parametrize("offset_ms", [-30_001, 30_001, -86_400_000])
def test_stale_or_future_clock(offset_ms: int) -> None:
    _, listener = pair()
    hello = Hello(P2P_VERSION, CHAIN, b"\x09" * 32, NOW + offset_ms, Role.DIALER).encode()
    assert refusal_of(listener, hello) is Refusal.CLOCK


def test_clock_skew_at_the_limit_is_accepted() -> None:
    _, listener = pair()
    hello = ForgingDialer(time_ms=NOW - 30_000).hello_bytes
    assert len(listener.receive(hello, NOW)) == 1


def test_wrong_role_and_a_reflected_hello() -> None:
    dialer, listener = pair()
    listener_hello = Hello(P2P_VERSION, CHAIN, b"\x09" * 32, NOW, Role.LISTENER).encode()
    assert refusal_of(listener, listener_hello) is Refusal.ROLE
    (own_hello,) = dialer.start()
    assert refusal_of(dialer, own_hello) is Refusal.ROLE  # our Hello bounced back


@pytest.mark.parametrize("point", [bytes(32), b"\x01" + bytes(31)])
def test_low_order_ephemeral_key(point: bytes) -> None:
    _, listener = pair()
    hello = Hello(P2P_VERSION, CHAIN, point, NOW, Role.DIALER).encode()
    assert refusal_of(listener, hello) is Refusal.WEAK_KEY


def test_undecryptable_auth() -> None:
    forger = ForgingDialer()
    _, listener = pair()
    (hello_l,) = listener.receive(forger.hello_bytes, NOW)
    assert hello_l
    assert refusal_of(listener, b"\x00" * 100) is Refusal.DECRYPT


def test_malformed_auth_under_valid_encryption() -> None:
    forger = ForgingDialer()
    _, listener = pair()
    (hello_l,) = listener.receive(forger.hello_bytes, NOW)
    _, channel = forger.keys(hello_l)
    assert refusal_of(listener, channel.seal(b"\xa0")) is Refusal.MALFORMED


def test_unknown_key() -> None:
    forger = ForgingDialer()
    _, listener = pair()
    (hello_l,) = listener.receive(forger.hello_bytes, NOW)
    assert refusal_of(listener, forger.auth(hello_l, STRANGER_KEY)) is Refusal.UNKNOWN_KEY


def test_bad_signature() -> None:
    """A known key, but the signature is another key's: the claim is refused."""
    forger = ForgingDialer()
    _, listener = pair()
    (hello_l,) = listener.receive(forger.hello_bytes, NOW)
    auth = forger.auth(hello_l, STRANGER_KEY, claim=DIALER_KEY.public_key)
    assert refusal_of(listener, auth) is Refusal.BAD_SIGNATURE


def test_signature_for_the_other_role_is_refused() -> None:
    """A dialer cannot pass off a listener-role signature (no reflection)."""
    forger = ForgingDialer()
    _, listener = pair()
    (hello_l,) = listener.receive(forger.hello_bytes, NOW)
    transcript, channel = forger.keys(hello_l)
    auth = Auth.create(DIALER_KEY, chain_id=CHAIN, transcript=transcript, role=Role.LISTENER)
    assert refusal_of(listener, channel.seal(auth.encode())) is Refusal.BAD_SIGNATURE


def test_connecting_to_ourselves() -> None:
    dialer, listener = pair(listener_key=DIALER_KEY, expected=None)
    (hello_d,) = dialer.start()
    (hello_l,) = listener.receive(hello_d, NOW)
    (auth_d,) = dialer.receive(hello_l, NOW)
    assert refusal_of(listener, auth_d) is Refusal.SELF


def test_a_forged_claim_to_be_us_is_a_bad_signature_not_self() -> None:
    """SELF (and WRONG_PEER) rest on a verified signature: an unauthenticated
    claim of our own key must not make us believe we dialed ourselves."""
    forger = ForgingDialer()
    _, listener = pair()
    (hello_l,) = listener.receive(forger.hello_bytes, NOW)
    auth = forger.auth(hello_l, STRANGER_KEY, claim=LISTENER_KEY.public_key)
    assert refusal_of(listener, auth) is Refusal.BAD_SIGNATURE


def test_wrong_peer_for_the_dialer() -> None:
    """The dialer meant to reach LISTENER_KEY; another allowed node answers."""
    impostor = SigningKey(b"\x44" * 32)
    dialer = Handshake(
        policy(DIALER_KEY, allowed=KNOWN | {impostor.public_key}),
        Role.DIALER,
        NOW,
        expected_peer=LISTENER_KEY.public_key,
    )
    listener = Handshake(policy(impostor), Role.LISTENER, NOW)
    (hello_d,) = dialer.start()
    (hello_l,) = listener.receive(hello_d, NOW)
    (auth_d,) = dialer.receive(hello_l, NOW)
    (auth_l,) = listener.receive(auth_d, NOW)
    assert refusal_of(dialer, auth_l) is Refusal.WRONG_PEER


def test_messages_after_completion_are_unexpected() -> None:
    dialer, listener = pair()
    run(dialer, listener)
    assert refusal_of(listener, b"more") is Refusal.UNEXPECTED
    assert refusal_of(dialer, b"more") is Refusal.UNEXPECTED


def test_a_recorded_handshake_cannot_be_replayed() -> None:
    """Replaying a genuine dialer's Hello and Auth to a fresh listener fails:
    the listener's new ephemeral key changes the session keys."""
    dialer, listener = pair()
    (hello_d,) = dialer.start()
    (hello_l,) = listener.receive(hello_d, NOW)
    (auth_d,) = dialer.receive(hello_l, NOW)
    listener.receive(auth_d, NOW)
    fresh = Handshake(policy(LISTENER_KEY), Role.LISTENER, NOW)
    fresh.receive(hello_d, NOW)
    assert refusal_of(fresh, auth_d) is Refusal.DECRYPT
    # Later than the clock window, the Hello itself is already refused.
    late = Handshake(policy(LISTENER_KEY), Role.LISTENER, NOW + 60_000)
    with pytest.raises(HandshakeError) as info:
        late.receive(hello_d, NOW + 60_000)
    assert info.value.reason is Refusal.CLOCK


def test_every_refusal_reason_is_reachable() -> None:
    """The tests above trigger each reason; this keeps the list honest."""
    assert {r.value for r in Refusal} == {
        "malformed",
        "version",
        "chain_id",
        "clock",
        "role",
        "weak_key",
        "bad_signature",
        "unknown_key",
        "wrong_peer",
        "self",
        "decrypt",
        "unexpected",
    }


# --------------------------------------------------------------------------- channel


def channels() -> tuple[SecureChannel, SecureChannel]:
    d, ln = run(*pair())
    return d.channel, ln.channel


def test_tampered_frame() -> None:
    sender, receiver = channels()
    frame = bytearray(sender.seal(b"hello"))
    frame[3] ^= 0x01
    with pytest.raises(ChannelError):
        receiver.open(bytes(frame))


def test_replayed_frame() -> None:
    sender, receiver = channels()
    frame = sender.seal(b"once")
    assert receiver.open(frame) == b"once"
    with pytest.raises(ChannelError):
        receiver.open(frame)


def test_reordered_frames() -> None:
    sender, receiver = channels()
    first, second = sender.seal(b"1"), sender.seal(b"2")
    with pytest.raises(ChannelError):
        receiver.open(second)
    assert receiver.open(first) == b"1"  # a failed open does not advance the counter
    assert receiver.open(second) == b"2"


def test_dropped_frame_breaks_the_stream() -> None:
    sender, receiver = channels()
    sender.seal(b"lost")
    with pytest.raises(ChannelError):
        receiver.open(sender.seal(b"next"))


def test_frame_from_the_other_direction_is_refused() -> None:
    """Each direction has its own key: a frame cannot be reflected back."""
    d, ln = run(*pair())
    frame = d.channel.seal(b"reflected")
    with pytest.raises(ChannelError):
        d.channel.open(frame)
    assert ln.channel.open(frame) == b"reflected"


def test_short_frame() -> None:
    _, receiver = channels()
    with pytest.raises(ChannelError):
        receiver.open(b"\x00" * 15)


def test_counter_exhaustion() -> None:
    sender, receiver = channels()
    sender._send_counter = (1 << 64) - 1
    receiver._recv_counter = (1 << 64) - 1
    with pytest.raises(ChannelError):
        sender.seal(b"x")
    with pytest.raises(ChannelError):
        receiver.open(b"\x00" * 32)


def test_nonce_is_a_big_endian_counter_with_four_zero_bytes() -> None:
    """Frame n is ChaCha20-Poly1305-IETF under nonce 0x00000000 || n (docs/P2P.md)."""
    key_a, key_b = b"\x01" * 32, b"\x02" * 32
    channel = SecureChannel(key_a, key_b)
    channel.seal(b"frame 0")
    expected = nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(
        b"frame 1", None, bytes(4) + (1).to_bytes(8, "big"), key_a
    )
    assert channel.seal(b"frame 1") == expected


# --------------------------------------------------------------------------- fuzz


def expect_only_handshake_errors(handshake: Handshake, data: bytes) -> None:
    try:
        handshake.receive(data, NOW)
    except HandshakeError:
        return


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_as_the_dialers_hello(data: bytes) -> None:
    _, listener = pair()
    expect_only_handshake_errors(listener, data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_as_the_listeners_hello(data: bytes) -> None:
    dialer, _ = pair()
    dialer.start()
    expect_only_handshake_errors(dialer, data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_as_the_dialers_auth(data: bytes) -> None:
    forger = ForgingDialer()
    _, listener = pair()
    listener.receive(forger.hello_bytes, NOW)
    expect_only_handshake_errors(listener, data)
    assert listener.session is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_as_the_listeners_auth(data: bytes) -> None:
    dialer, listener = pair()
    (hello_d,) = dialer.start()
    (hello_l,) = listener.receive(hello_d, NOW)
    dialer.receive(hello_l, NOW)
    expect_only_handshake_errors(dialer, data)
    assert dialer.session is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_plaintext_under_valid_encryption(data: bytes) -> None:
    """Authenticated garbage as the Auth: still only a HandshakeError."""
    forger = ForgingDialer()
    _, listener = pair()
    (hello_l,) = listener.receive(forger.hello_bytes, NOW)
    _, channel = forger.keys(hello_l)
    expect_only_handshake_errors(listener, channel.seal(data))
    assert listener.session is None


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([Role.DIALER, Role.LISTENER]), st.lists(st.binary(max_size=200), max_size=4))
def test_random_message_sequences(role: Role, messages: list[bytes]) -> None:
    """Several messages in a row, whatever came before: still only HandshakeError,
    and once refused, always refused."""
    dialer, listener = pair()
    handshake = dialer if role is Role.DIALER else listener
    handshake.start()
    reasons: list[Refusal] = []
    for data in messages:
        try:
            handshake.receive(data, NOW)
        except HandshakeError as exc:
            reasons.append(exc.reason)
    assert all(reason is Refusal.UNEXPECTED for reason in reasons[1:])
    assert handshake.session is None


def test_a_refused_handshake_stays_refused() -> None:
    _, listener = pair()
    assert refusal_of(listener, b"garbage") is Refusal.MALFORMED
    assert refusal_of(listener, ForgingDialer().hello_bytes) is Refusal.UNEXPECTED


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_after_the_handshake(data: bytes) -> None:
    d, ln = run(*pair())
    with pytest.raises(ChannelError):
        ln.channel.open(data)
    assert ln.channel.open(d.channel.seal(b"still fine")) == b"still fine"


def test_handshake_records_reject_bad_shapes() -> None:
    with pytest.raises(DecodeError):
        Hello.decode(Hello(1, CHAIN, b"\x01" * 32, NOW, Role.DIALER).encode() + b"\x00")
    with pytest.raises(DecodeError):
        Auth.decode(b"\xa0")
