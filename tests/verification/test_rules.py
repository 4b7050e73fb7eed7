"""Grace's AST rules: each dangerous construct is reported with the right rule id."""

from __future__ import annotations

import ast

import pytest

from grace.verification.model import Severity
from grace.verification.rules import RULES, category_of, check_module


def findings(source: str) -> list[tuple[str, Severity]]:
    """(rule id, severity) of every finding in ``source``."""
    return [(i.rule_id, i.severity) for i in check_module(ast.parse(source), "m.py")]


def rule_ids(source: str) -> set[str]:
    """The rule ids found in ``source``."""
    return {rule for rule, _ in findings(source)}


CLEAN = '''
import json
from pathlib import Path


def load(path: Path) -> dict:
    """Read a JSON document from a path inside the working directory."""
    with open(path) as f:
        return json.load(f)


def save(data: dict, name: str = "out.json") -> None:
    Path(name).write_text(json.dumps(data))
    open("result.txt", "w").write("ok")
'''


def test_clean_code_has_no_findings() -> None:
    """Ordinary reading and writing inside the working directory is not reported."""
    assert findings(CLEAN) == []


@pytest.mark.parametrize(
    ("source", "rule", "severity"),
    [
        ("eval(user_input)", "GR101", Severity.CRITICAL),
        ("exec(code)", "GR101", Severity.CRITICAL),
        ("eval('1 + 1')", "GR101", Severity.HIGH),
        ("compile(src, 'f', 'exec')", "GR101", Severity.HIGH),
        ("import importlib\nimportlib.import_module(name)", "GR103", Severity.HIGH),
        ("__import__(name)", "GR103", Severity.HIGH),
        ("__import__('os')", "GR103", Severity.LOW),
        ("import os\nos.system('ls')", "GR104", Severity.HIGH),
        ("import os\nos.popen(cmd)", "GR104", Severity.HIGH),
        ("import subprocess\nsubprocess.run(cmd, shell=True)", "GR104", Severity.HIGH),
        ("import subprocess as sp\nsp.check_output('ls', shell=True)", "GR104", Severity.HIGH),
        ("import pickle\npickle.loads(data)", "GR105", Severity.HIGH),
        ("import marshal\nmarshal.loads(data)", "GR105", Severity.HIGH),
        ("import yaml\nyaml.load(text)", "GR105", Severity.HIGH),
        ("import shelve\nshelve.open('db')", "GR105", Severity.HIGH),
        ("import os\nos.remove(path)", "GR106", Severity.MEDIUM),
        ("import shutil\nshutil.rmtree(tree)", "GR106", Severity.HIGH),
        ("import shutil\nshutil.rmtree('/')", "GR106", Severity.CRITICAL),
        ("from pathlib import Path\nPath('/etc/cron.d/x').unlink()", "GR106", Severity.CRITICAL),
        ("open('/etc/passwd', 'a')", "GR107", Severity.CRITICAL),
        ("open('../secrets.txt', 'w')", "GR107", Severity.HIGH),
        ("open('/srv/data.txt', 'w')", "GR107", Severity.HIGH),
        ("open('/tmp/x', 'w')", "GR107", Severity.MEDIUM),
        ("import os\nos.open('/var/lib/x', os.O_WRONLY | os.O_CREAT)", "GR107", Severity.CRITICAL),
        ("from pathlib import Path\nPath.home().joinpath('a').write_text('x')", "GR107",
         Severity.HIGH),
        ("from pathlib import Path\nPath('~/.bashrc').write_text('x')", "GR107", Severity.CRITICAL),
        ("import shutil\nshutil.copy('a.txt', '/usr/bin/a')", "GR107", Severity.CRITICAL),
        ("import os\nos.path.expanduser('~')\nopen(os.path.expanduser('~/x'), 'w')", "GR107",
         Severity.HIGH),
        ("import socket\nsocket.socket()", "GR108", Severity.MEDIUM),
        ("import socket\nsocket.socket(socket.AF_PACKET, socket.SOCK_RAW)", "GR108",
         Severity.HIGH),
        ("import urllib.request\nurllib.request.urlopen(url)", "GR108", Severity.MEDIUM),
        ("import requests\nrequests.post(url, json={})", "GR108", Severity.MEDIUM),
        ("import os\nos.fork()", "GR109", Severity.LOW),
        ("import os\nos.execv('/bin/sh', ['sh'])", "GR109", Severity.MEDIUM),
        ("import ctypes\nctypes.CDLL('libc.so.6')", "GR110", Severity.HIGH),
        ("().__class__.__base__.__subclasses__()", "GR111", Severity.HIGH),
        ("import gc\ngc.get_referrers(obj)", "GR111", Severity.HIGH),
        ("import builtins\nbuiltins.open = fake_open", "GR111", Severity.HIGH),
        ("import sys\nsys.modules['json'] = evil", "GR111", Severity.HIGH),
    ],
)  # fmt: skip
def test_dangerous_construct_is_reported_with_its_rule(
    source: str, rule: str, severity: Severity
) -> None:
    """Each construct yields a finding with the expected rule id and severity."""
    found = findings(source)
    assert (rule, severity) in found, found


@pytest.mark.parametrize(
    "source",
    [
        "import base64\nexec(base64.b64decode('cHJpbnQoMSk='))",
        "from base64 import b64decode as d\neval(d(blob))",
        "import codecs\nexec(codecs.decode('cevag(1)', 'rot13'))",
        "import zlib\nexec(zlib.decompress(blob))",
        "exec(bytes.fromhex('7072696e742831 29').decode())",
        "exec(''.join(chr(c) for c in [112, 114]))",
        "exec('))1(tnirp'[::-1])",
        "import marshal\nexec(marshal.loads(blob))",
        "run = exec\nrun(payload)",
        "getattr(__builtins__, 'ev' + 'al')('1')",
        "import builtins\ngetattr(builtins, name)(code)",
        "__builtins__.__dict__['exec'](code)",
        "globals()['__builtins__']['eval'](code)",
        "import types\ntypes.FunctionType(code, {})()",
    ],
)
def test_obfuscated_code_execution_is_critical(source: str) -> None:
    """Execution hidden behind decoding, aliases or lookups is GR102 and critical."""
    assert ("GR102", Severity.CRITICAL) in findings(source), findings(source)


def test_names_resolve_through_import_aliases() -> None:
    """An aliased module or imported name resolves to what it really is."""
    source = (
        "from os import system as run_it\nimport subprocess as sp\nrun_it('x')\nsp.getoutput(c)"
    )
    assert [r for r, _ in findings(source)] == ["GR104", "GR104"]


def test_shell_false_and_safe_yaml_loader_are_not_reported() -> None:
    """Explicitly safe forms of risky calls are left alone."""
    source = (
        "import subprocess, yaml\n"
        "subprocess.run(['ls'], shell=False)\n"
        "yaml.load(text, Loader=yaml.SafeLoader)\n"
        "yaml.safe_load(text)\n"
    )
    assert findings(source) == []


def test_findings_carry_line_column_confidence_and_cwe() -> None:
    """A finding says where it is, how sure the rule is and which weakness it is."""
    (issue,) = check_module(ast.parse("x = 1\n  \nif x:\n    eval(x)\n"), "pkg/m.py")
    assert (issue.file, issue.line, issue.column) == ("pkg/m.py", 4, 4)
    assert issue.confidence == "high"
    assert issue.cwe == 95
    assert issue.message


def test_every_rule_has_a_category_and_bandit_ids_map_to_categories() -> None:
    """Deduplication needs a category for every Grace rule and for the mapped bandit tests."""
    assert all(category_of(rule_id) for rule_id in RULES)
    assert category_of("B307") == category_of("GR101") == "dynamic-code"
    assert category_of("B404") is None
