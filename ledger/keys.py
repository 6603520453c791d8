"""ed25519 keys (through PyNaCl), domain-separated signing, and key files.

Signing always goes through :func:`sign_bytes`: a domain tag naming the kind of
object, a NUL byte, then the canonical encoding of the object without its
signature. Every signed kind has its own tag, and every signed object carries
the chain id inside the encoded bytes, so a signature made for one kind or one
chain never verifies as another.

Key files are JSON (``{"type": "ed25519", "public_key": hex, "secret_seed": hex}``)
written atomically with mode 0600. Loading refuses a file that group or others
can read, or one that is malformed, with a :class:`KeyFileError` naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import nacl.exceptions
import nacl.signing

from ledger.errors import KeyFileError

PUBLIC_KEY_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
SEED_BYTES: Final = 32

KEY_FILE_TYPE: Final = "ed25519"


class Domain:
    """Signature domain tags, one per signed kind. Never reuse or change one."""

    TX: Final = b"radledger/tx/v1"
    VOTE: Final = b"radledger/vote/v1"


def sign_bytes(domain: bytes, unsigned_encoding: bytes) -> bytes:
    """The exact bytes a signature covers: ``domain || 0x00 || encoding``."""
    return domain + b"\x00" + unsigned_encoding


def verify(public_key: bytes, domain: bytes, unsigned_encoding: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``public_key``'s signature of the tagged bytes.

    Never raises on well-typed input: wrong lengths and invalid points are False.
    """
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(sign_bytes(domain, unsigned_encoding), signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True, repr=False)
class SigningKey:
    """An ed25519 private key. ``repr`` never shows the secret."""

    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_BYTES:
            raise ValueError(f"an ed25519 seed is {SEED_BYTES} bytes, got {len(self.seed)}")

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @property
    def public_key(self) -> bytes:
        return bytes(nacl.signing.SigningKey(self.seed).verify_key)

    def sign(self, domain: bytes, unsigned_encoding: bytes) -> bytes:
        signed = nacl.signing.SigningKey(self.seed).sign(sign_bytes(domain, unsigned_encoding))
        return bytes(signed.signature)

    def __repr__(self) -> str:
        return f"SigningKey(public_key={self.public_key.hex()})"


def write_key_file(
    path: str | os.PathLike[str], key: SigningKey, *, overwrite: bool = False
) -> None:
    """Write ``key`` to ``path`` as JSON with mode 0600, atomically and durably.

    Refuses to replace an existing file unless ``overwrite``: losing a validator
    key by accident is worse than an error.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise KeyFileError(f"{target}: already exists; refusing to overwrite a key file")
    document = {
        "type": KEY_FILE_TYPE,
        "public_key": key.public_key.hex(),
        "secret_seed": key.seed.hex(),
    }
    payload = (json.dumps(document, indent=2) + "\n").encode()
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise KeyFileError(f"{target}: cannot create key file: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)  # in case a umask or ACL widened it
        os.replace(tmp, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise KeyFileError(f"{target}: cannot write key file: {exc.strerror}") from None


def load_key_file(path: str | os.PathLike[str]) -> SigningKey:
    """Load a key file; :class:`KeyFileError` naming the file for any problem."""
    source = Path(path)
    try:
        info = source.stat()
    except FileNotFoundError:
        raise KeyFileError(f"{source}: key file not found") from None
    except OSError as exc:
        raise KeyFileError(f"{source}: cannot read key file: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(f"{source}: not a regular file")
    if info.st_mode & 0o077:
        raise KeyFileError(
            f"{source}: key file is accessible by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {source}"
        )
    try:
        document = json.loads(source.read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{source}: not a valid JSON key file: {exc}") from None
    if not isinstance(document, dict) or document.get("type") != KEY_FILE_TYPE:
        raise KeyFileError(f'{source}: expected a JSON object with "type": "{KEY_FILE_TYPE}"')
    try:
        seed = bytes.fromhex(document["secret_seed"])
        public = bytes.fromhex(document["public_key"])
    except (KeyError, TypeError, ValueError):
        raise KeyFileError(
            f'{source}: "secret_seed" and "public_key" must be hex strings'
        ) from None
    if len(seed) != SEED_BYTES:
        raise KeyFileError(f"{source}: secret_seed must be {SEED_BYTES} bytes")
    key = SigningKey(seed)
    if key.public_key != public:
        raise KeyFileError(f"{source}: public_key does not match secret_seed")
    return key
