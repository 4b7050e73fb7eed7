"""``grace verify``: the command on real files, through Typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from grace.cli.verify import verify
from grace.config import GraceSettings

CODE = "def inc(x):\n    return x + 1\n"
TESTS = "from inc import inc\n\n\ndef test_inc():\n    assert inc(1) == 2\n"


def cli(data_dir: Path) -> typer.Typer:
    """A root app like ``grace``'s, with ``verify`` as its command."""
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = GraceSettings(data_dir=data_dir)

    app.command()(verify)
    return app


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with code and its tests."""
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "inc.py").write_text(CODE)
    (tmp_path / "proj" / "test_inc.py").write_text(TESTS)
    return tmp_path / "proj"


def invoke(tmp_path: Path, *args: str) -> tuple[int, str]:
    """Run ``grace verify ARGS``; exit code and output."""
    result = CliRunner().invoke(cli(tmp_path / "data"), ["verify", *args])
    return result.exit_code, result.output


def test_verified_directory_prints_a_report_and_exits_0(project: Path, tmp_path: Path) -> None:
    """A clean project with passing tests is VERIFIED, with the test counts and isolation."""
    code, output = invoke(tmp_path, str(project))
    assert code == 0, output
    assert "VERIFIED" in output
    assert "1 passed, 0 failed" in output
    assert "isolation: network" in output


def test_failing_tests_exit_1_with_the_failure(project: Path, tmp_path: Path) -> None:
    """A failing test refutes: exit 1 and the failing test named."""
    (project / "inc.py").write_text("def inc(x):\n    return x + 2\n")
    code, output = invoke(tmp_path, str(project))
    assert code == 1
    assert "REFUTED" in output
    assert "test_inc" in output


def test_separate_tests_and_json_output(tmp_path: Path) -> None:
    """--tests adds a tests path; --json prints the whole result."""
    (tmp_path / "inc.py").write_text(CODE)
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "test_inc.py").write_text(TESTS)
    code, output = invoke(
        tmp_path, str(tmp_path / "inc.py"), "--tests", str(tmp_path / "t"), "--json"
    )
    assert code == 0, output
    body = json.loads(output)
    assert body["status"] == "verified"
    assert body["tests"]["passed"] == 1


def test_dangerous_code_without_tests(tmp_path: Path) -> None:
    """A critical finding refutes with the rule in the table; no tests are run."""
    (tmp_path / "evil.py").write_text("import os\n\nos.system(input())\nexec(input())\n")
    code, output = invoke(tmp_path, str(tmp_path / "evil.py"))
    assert code == 1
    assert "GR101" in output
    assert "GR104" in output
    assert "not run" in output


def test_code_without_tests_is_inconclusive_exit_3(tmp_path: Path) -> None:
    """Nothing to run the code against: inconclusive, exit 3, with the advice."""
    (tmp_path / "inc.py").write_text(CODE)
    code, output = invoke(tmp_path, str(tmp_path / "inc.py"))
    assert code == 3
    assert "INCONCLUSIVE" in output
    assert "Add pytest tests" in output


def test_record_appends_the_verdict_to_the_ledger(project: Path, tmp_path: Path) -> None:
    """--record writes the verdict into the data dir's ledger and prints its seq."""
    code, output = invoke(tmp_path, str(project), "--record", "--target", "svc:inc")
    assert code == 0, output
    assert "recorded in the ledger at seq 1" in output
    assert (tmp_path / "data").is_dir()


def test_unreadable_path_is_a_clear_error(tmp_path: Path) -> None:
    """A missing path raises the verification error naming it (grace prints it, exit 2)."""
    result = CliRunner().invoke(cli(tmp_path / "data"), ["verify", str(tmp_path / "nope")])
    assert result.exit_code != 0
    assert "neither a file nor a directory" in str(result.exception)
