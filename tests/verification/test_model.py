"""Code bundles validate their input; results keep their invariants."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import pytest

from grace.errors import VerificationError
from grace.verification.model import (
    BundleLimits,
    CodeBundle,
    VerificationResult,
    VerificationStatus,
    is_test_file,
)


@pytest.mark.parametrize(
    "name",
    ["/etc/x.py", "../x.py", "a/../../x.py", "a//b.py", ".hidden.py", "a/.git/x.py", "a\\b.py",
     "", "x.txt", "./x.py"],
)  # fmt: skip
def test_bad_file_names_are_refused_by_name(name: str) -> None:
    """Absolute, climbing, hidden, non-normal or non-Python names are refused, named."""
    with pytest.raises(VerificationError):
        CodeBundle.of({name: "x = 1"})


def test_size_and_count_limits_are_enforced() -> None:
    """Files over the per-file, total or count limits are refused with the number."""
    limits = BundleLimits(max_files=2, max_file_bytes=10, max_total_bytes=15)
    with pytest.raises(VerificationError, match="over the limit of 10"):
        CodeBundle.of({"a.py": "x" * 11}, limits=limits)
    with pytest.raises(VerificationError, match="over the limit of 15"):
        CodeBundle.of({"a.py": "x" * 8, "b.py": "y" * 8}, limits=limits)
    with pytest.raises(VerificationError, match="more than 2 files"):
        CodeBundle.of({"a.py": "", "b.py": ""}, {"test_c.py": ""}, limits=limits)


def test_code_and_test_names_must_not_clash() -> None:
    """A name used for both code and tests is refused."""
    with pytest.raises(VerificationError, match="both code and tests"):
        CodeBundle.of({"m.py": "x = 1"}, {"m.py": "y = 2"})


def test_a_source_string_becomes_module_and_test_module() -> None:
    """Strings get the conventional names the tests import from."""
    bundle = CodeBundle.of("x = 1", "from module import x")
    assert list(bundle.files) == ["module.py"]
    assert list(bundle.tests) == ["test_module.py"]
    assert bundle.files["module.py"] == b"x = 1"


def test_from_path_splits_tests_and_skips_hidden_and_links(tmp_path: Path) -> None:
    """A directory's test files become tests; hidden dirs, caches and symlinks are left out."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "core.py").write_text("x = 1\n")
    (tmp_path / "test_core.py").write_text("def test_x(): pass\n")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "junk.py").write_text("junk\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "c.py").write_text("c\n")
    (tmp_path / "link.py").symlink_to("/etc/hostname")
    bundle = CodeBundle.from_path(tmp_path)
    assert sorted(bundle.files) == ["pkg/__init__.py", "pkg/core.py"]
    assert sorted(bundle.tests) == ["test_core.py"]


def test_from_path_reads_a_separate_tests_directory(tmp_path: Path) -> None:
    """--tests adds its files as tests; a missing path is a clear error."""
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "test_a.py").write_text("def test_a(): pass\n")
    bundle = CodeBundle.from_path(tmp_path / "code.py", tmp_path / "t")
    assert list(bundle.files) == ["code.py"]
    assert list(bundle.tests) == ["test_a.py"]
    with pytest.raises(VerificationError, match="neither a file nor a directory"):
        CodeBundle.from_path(tmp_path / "missing")


def test_digest_depends_on_names_and_contents() -> None:
    """The bundle digest is stable and changes with any name or byte."""
    a = CodeBundle.of({"a.py": "x = 1"})
    assert a.sha256 == CodeBundle.of({"a.py": b"x = 1"}).sha256
    assert a.sha256 != CodeBundle.of({"b.py": "x = 1"}).sha256
    assert a.sha256 != CodeBundle.of({"a.py": "x = 2"}).sha256


def test_test_file_pattern_is_pytests_default() -> None:
    """test_*.py, *_test.py and conftest.py are tests; other modules are code."""
    assert is_test_file("a/test_x.py")
    assert is_test_file("x_test.py")
    assert is_test_file("conftest.py")
    assert not is_test_file("testing.py")


def test_safe_to_execute_is_true_exactly_for_verified() -> None:
    """A result claiming safety without a verified status cannot be built."""
    now = _dt.datetime(2026, 1, 1, tzinfo=_dt.UTC)
    common: dict[str, Any] = {
        "verification_id": "ver_1",
        "confidence": 0.5,
        "issues": (),
        "recommendations": (),
        "static": None,
        "tests": None,
        "tests_skipped_reason": None,
        "code_sha256": "0" * 64,
        "target": "",
        "actor": "a",
        "started_at": now,
        "finished_at": now,
    }
    with pytest.raises(ValueError, match="safe_to_execute"):
        VerificationResult(status=VerificationStatus.INCONCLUSIVE, safe_to_execute=True, **common)
    with pytest.raises(ValueError, match="confidence"):
        VerificationResult(
            status=VerificationStatus.ERROR, safe_to_execute=False, **{**common, "confidence": 2.0}
        )
