"""Key files: mode 0600, clear errors naming the file, no silent overwrite."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from ledger.errors import KeyFileError
from ledger.keys import Domain, SigningKey, load_key_file, verify, write_key_file


def test_write_then_load(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "node_key.json"
    write_key_file(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_key_file(path)
    assert loaded == key
    assert json.loads(path.read_text())["public_key"] == key.public_key.hex()
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    first = SigningKey.generate()
    write_key_file(path, first)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        write_key_file(path, SigningKey.generate())
    assert load_key_file(path) == first
    second = SigningKey.generate()
    write_key_file(path, second, overwrite=True)
    assert load_key_file(path) == second


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_refuses_readable_by_others(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k.json"
    write_key_file(path, SigningKey.generate())
    os.chmod(path, mode)
    with pytest.raises(KeyFileError, match=r"group or others.*chmod 600") as info:
        load_key_file(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not a valid JSON"),
        ("[]", '"type"'),
        ('{"type": "rsa"}', '"type"'),
        ('{"type": "ed25519", "public_key": "00", "secret_seed": "zz"}', "hex"),
        ('{"type": "ed25519", "public_key": "00", "secret_seed": "0011"}', "32 bytes"),
        ('{"type": "ed25519", "public_key": "00", "secret_seed": "' + "11" * 32 + '"}', "match"),
        ('{"type": "ed25519"}', "hex"),
    ],
)
def test_malformed_files_name_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match=message) as info:
        load_key_file(path)
    assert str(path) in str(info.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not found"):
        load_key_file(tmp_path / "absent.json")
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_key_file(tmp_path)


def test_repr_hides_the_secret() -> None:
    key = SigningKey(b"\x05" * 32)
    assert key.seed.hex() not in repr(key)
    assert key.public_key.hex() in repr(key)


def test_verify_never_raises_on_bad_lengths() -> None:
    key = SigningKey(b"\x05" * 32)
    sig = key.sign(Domain.TX, b"payload")
    assert verify(key.public_key, Domain.TX, b"payload", sig)
    assert not verify(key.public_key[:31], Domain.TX, b"payload", sig)
    assert not verify(key.public_key, Domain.TX, b"payload", sig[:63])
    assert not verify(b"\xff" * 32, Domain.TX, b"payload", sig)  # not a curve point
    assert not verify(key.public_key, Domain.VOTE, b"payload", sig)
