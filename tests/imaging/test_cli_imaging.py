"""``radledger fingerprint`` and ``radledger gate`` through click, as an operator runs them.

Every run uses ``--jobs 1`` (the parallel scan is checked in test_manifest_build).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from imaging.fingerprint import fingerprint_file
from ledger.manifest import GATE_CHECKS
from node.cli import cli
from tests.imaging.conftest import bundled, ct, encode

FINGERPRINT_KEYS = {"path", "sop_instance_uid", "pixel", "meta", "file"}


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def _copy(name: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    shutil.copyfile(bundled(name), target)
    return target


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_the_commands_are_registered() -> None:
    assert {"fingerprint", "gate"} <= set(cli.commands)


# --------------------------------------------------------------------------- fingerprint


@pytest.mark.parametrize("command", ["fingerprint", "gate"])
def test_an_image_over_the_pixel_limit_is_a_per_file_error(command: str, study: list[Path]) -> None:
    """16 x 16 x 2 bytes = 512 decoded bytes per synthetic instance."""
    at_limit = _run(command, "--jobs", "1", "--max-pixel-bytes", "512", *study)
    assert at_limit.exit_code == 0, at_limit.output
    over = _run(command, "--json", "--jobs", "1", "--max-pixel-bytes", "511", *study)
    assert over.exit_code == 1
    assert "Traceback" not in over.output
    records = [json.loads(line) for line in _lines(over.stdout)]
    assert [r["error"] for r in records] == ["too_large"] * len(study)
    assert "more than the limit of 511 bytes" in records[0]["message"]


def test_the_pixel_limit_must_be_positive(study: list[Path]) -> None:
    result = _run("fingerprint", "--max-pixel-bytes", "0", *study)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_fingerprint_prints_uid_and_three_digests_per_file(study: list[Path]) -> None:
    result = _run("fingerprint", "--jobs", "1", *study)
    assert result.exit_code == 0, result.output
    lines = _lines(result.stdout)
    assert len(lines) == len(study)
    for line, path in zip(lines, study, strict=True):
        fp = fingerprint_file(path)
        assert fp.pixel is not None
        assert line.split("\t") == [
            str(path),
            fp.sop_instance_uid,
            f"pixel={fp.pixel.hex()}",
            f"meta={fp.meta.hex()}",
            f"file={fp.file.hex()}",
        ]


def test_fingerprint_json_has_exactly_the_documented_keys(study: list[Path]) -> None:
    result = _run("fingerprint", "--json", "--jobs", "1", *study)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in _lines(result.stdout)]
    assert [r["path"] for r in records] == [str(p) for p in study]
    for record, path in zip(records, study, strict=True):
        assert set(record) == FINGERPRINT_KEYS
        assert record == {"path": str(path), **fingerprint_file(path).to_json()}
        for key in ("pixel", "meta", "file"):
            assert len(record[key]) == 64
            bytes.fromhex(record[key])


def test_fingerprint_shows_the_invariance_on_bundled_files(tmp_path: Path) -> None:
    names = ["MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_jp2klossless.dcm"]
    paths = [_copy(name, tmp_path) for name in names]
    result = _run("fingerprint", "--json", "-j", "1", *paths)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in _lines(result.stdout)]
    assert len({(r["sop_instance_uid"], r["pixel"], r["meta"]) for r in records}) == 1
    assert len({r["file"] for r in records}) == 3


def test_an_instance_without_pixels_prints_no_pixel_digest(tmp_path: Path) -> None:
    path = _copy("test-SR.dcm", tmp_path)
    text = _run("fingerprint", "-j", "1", path)
    assert text.exit_code == 0, text.output
    assert "\tpixel=-\t" in text.stdout
    as_json = _run("fingerprint", "--json", "-j", "1", path)
    assert json.loads(as_json.stdout)["pixel"] is None


def _mixed_inputs(tmp_path: Path, study: list[Path]) -> tuple[list[Path], dict[Path, str]]:
    text = tmp_path / "bad" / "notes.dcm"
    text.parent.mkdir()
    text.write_text("not DICOM\n")
    truncated = tmp_path / "bad" / "cut.dcm"
    truncated.write_bytes(study[0].read_bytes()[:-100])
    missing = tmp_path / "bad" / "missing.dcm"
    undecodable = _copy("JPEG-lossy.dcm", tmp_path / "bad")
    bad = {
        text: "not_dicom",
        truncated: "truncated",
        missing: "unreadable",
        undecodable: "undecodable_pixels",
    }
    inputs = [study[0], text, study[1], truncated, missing, undecodable, study[2]]
    return inputs, bad


def test_bad_files_are_reported_and_the_others_still_printed(
    tmp_path: Path, study: list[Path]
) -> None:
    inputs, bad = _mixed_inputs(tmp_path, study)
    result = _run("fingerprint", "-j", "1", *inputs)
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    printed = [line.split("\t")[0] for line in _lines(result.stdout)]
    assert printed == [str(p) for p in study[:3]]
    errors = _lines(result.stderr)
    assert len(errors) == len(bad)
    for line, (path, code) in zip(errors, bad.items(), strict=True):
        assert line.startswith(f"{path}: {code}: ")
        assert len(line) > len(f"{path}: {code}: ")  # and says why
    assert "Traceback" not in result.output


def test_bad_files_in_json_mode_are_json_lines_too(tmp_path: Path, study: list[Path]) -> None:
    inputs, bad = _mixed_inputs(tmp_path, study)
    result = _run("fingerprint", "--json", "-j", "1", *inputs)
    assert result.exit_code == 1
    records = [json.loads(line) for line in _lines(result.stdout)]
    assert [r["path"] for r in records] == [str(p) for p in inputs]
    for record, path in zip(records, inputs, strict=True):
        if path in bad:
            assert set(record) == {"path", "error", "message"}
            assert record["error"] == bad[path]
            assert record["message"]
        else:
            assert set(record) == FINGERPRINT_KEYS


def test_folders_are_walked_recursively_skipping_hidden_entries(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    nested = root / "patient" / "study" / "series"
    nested.mkdir(parents=True)
    (nested / "b.dcm").write_bytes(encode(ct(seed=2), "explicit"))
    (root / "a.dcm").write_bytes(encode(ct(seed=1), "rle"))
    (nested / ".hidden.dcm").write_text("not DICOM, but hidden")
    hidden_dir = root / ".trash"
    hidden_dir.mkdir()
    (hidden_dir / "c.dcm").write_text("not DICOM either")
    result = _run("fingerprint", "--json", "-j", "1", root)
    assert result.exit_code == 0, result.output
    paths = [json.loads(line)["path"] for line in _lines(result.stdout)]
    assert paths == [str(root / "a.dcm"), str(nested / "b.dcm")]


def test_an_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = _run("fingerprint", tmp_path / "empty")
    assert result.exit_code == 1
    assert "no files found" in result.output


@pytest.mark.parametrize("command", ["fingerprint", "gate"])
def test_implicit_vr_files_are_processed_like_any_other(tmp_path: Path, command: str) -> None:
    (tmp_path / "a_implicit.dcm").write_bytes(encode(ct(seed=1), "implicit"))
    (tmp_path / "b_explicit.dcm").write_bytes(encode(ct(seed=2), "explicit"))
    result = _run(command, "-j", "1", tmp_path)
    assert result.exception is None, result.exception
    assert result.exit_code == 0, result.output
    assert len(_lines(result.stdout)) == 2


# --------------------------------------------------------------------------- gate


def test_gate_passes_a_de_identified_study(study: list[Path]) -> None:
    result = _run("gate", "-j", "1", study[0].parent.parent)
    assert result.exit_code == 0, result.output
    assert _lines(result.stdout) == [f"PASS {p}" for p in study]


def test_gate_fails_files_with_every_reason(tmp_path: Path, study: list[Path]) -> None:
    j2ki = _copy("693_J2KI.dcm", tmp_path / "other")
    mr = _copy("MR_small.dcm", tmp_path / "other")
    result = _run("gate", "-j", "1", study[0], j2ki, mr)
    assert result.exit_code == 1
    lines = _lines(result.stdout)
    assert lines[0] == f"PASS {study[0]}"
    assert lines[1].startswith(f"FAIL {j2ki}: ")
    assert "method: no De-identification Method (0012,0063)" in lines[1]
    assert "identity-removed" not in lines[1]
    assert lines[2].startswith(f"FAIL {mr}: identity-removed: ")
    assert "2 of 3 files refused" in result.stderr


def test_gate_relax_waives_named_checks(tmp_path: Path) -> None:
    j2ki = _copy("693_J2KI.dcm", tmp_path)
    result = _run("gate", "-j", "1", "--relax", "method", "--relax", "burned-in", j2ki)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"PASS {j2ki} (waived: method, burned-in)"
    partly = _run("gate", "-j", "1", "--relax", "burned-in", j2ki)
    assert partly.exit_code == 1
    assert "method:" in partly.stdout
    assert "burned-in:" not in partly.stdout


def test_gate_policy_relaxes_named_checks_and_relax_is_the_same_option(tmp_path: Path) -> None:
    j2ki = _copy("693_J2KI.dcm", tmp_path)
    result = _run("gate", "-j", "1", "--policy", "method", "--policy", "burned-in", j2ki)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"PASS {j2ki} (waived: method, burned-in)"
    mixed = _run("gate", "-j", "1", "--policy", "method", "--relax", "burned-in", j2ki)
    assert mixed.stdout == result.stdout
    partly = _run("gate", "-j", "1", "--policy", "burned-in", j2ki)
    assert partly.exit_code == 1
    assert "method:" in partly.stdout


@pytest.mark.parametrize("command", ["gate", "submit"])
def test_policy_is_the_documented_option(command: str) -> None:
    shown = _run(command, "--help")
    assert shown.exit_code == 0, shown.output
    assert "--policy, --relax" in shown.stdout
    for check in GATE_CHECKS:
        assert check in shown.stdout


@pytest.mark.parametrize("option", ["--policy", "--relax"])
def test_gate_refuses_an_unknown_check_name(tmp_path: Path, option: str) -> None:
    result = _run("gate", option, "looks-fine", tmp_path)
    assert result.exit_code == 2
    assert "looks-fine" in result.output
    for check in GATE_CHECKS:
        assert check in result.output


def test_gate_json(tmp_path: Path, study: list[Path]) -> None:
    j2ki = _copy("693_J2KI.dcm", tmp_path / "other")
    result = _run("gate", "--json", "-j", "1", "--relax", "burned-in", study[0], j2ki)
    assert result.exit_code == 1
    passed, failed = (json.loads(line) for line in _lines(result.stdout))
    keys = {"path", "sop_instance_uid", "passed", "failures", "waived", "method_codes"}
    assert set(passed) == set(failed) == keys
    assert passed["passed"] is True
    assert passed["method_codes"] == ["113100"]
    assert failed["passed"] is False
    assert [f["check"] for f in failed["failures"]] == ["method"]
    assert [w["check"] for w in failed["waived"]] == ["burned-in"]
    assert failed["sop_instance_uid"] == fingerprint_file(j2ki).sop_instance_uid


def test_gate_reports_unreadable_files_and_goes_on(tmp_path: Path, study: list[Path]) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\x00" * 64)
    result = _run("gate", "-j", "1", junk, study[0])
    assert result.exit_code == 1
    assert f"{junk}: not_dicom: " in result.stderr
    assert _lines(result.stdout) == [f"PASS {study[0]}"]
    assert "1 of 2 files refused" in result.stderr
