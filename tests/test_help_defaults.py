"""``dlsa fit --help`` shows the values ``dlsa fit`` really uses: those of
``DLSAConfig()``, nested configs included (not a bare ``FilterConfig()``'s)."""

from __future__ import annotations

import re
from functools import reduce
from pathlib import Path

import pytest

from dlsa.cli.flags import config_fields
from dlsa.cli.parser import build_parser
from dlsa.config import DLSAConfig


def _help(command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001
    return " ".join(sub.choices[command].format_help().split())


@pytest.mark.parametrize("command", ["fit", "diagnose"])
def test_help_defaults_are_the_default_configuration(command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100000")  # no line breaks inside a value
    text = _help(command)
    cfg = DLSAConfig()
    checked = 0
    for path, _, _, _ in config_fields():
        flag = "--" + path.replace("_", "-")
        value = reduce(getattr, path.split("."), cfg)
        if isinstance(value, tuple):
            value = ",".join(map(str, value))
        # the flag's own help: up to its "(default: ...)", never into the next flag
        match = re.search(re.escape(flag) + r" (?:(?! --).)*?\(default: ([^)]*)\)", text)
        if match is None:  # a switch or a flag whose help names no default
            continue
        assert match.group(1) == str(value), (flag, match.group(1), value)
        checked += 1
    assert checked > 40
    # the values the issue found wrong: the filter and head of the default configuration
    for flag, value in [("--flow-filter.batch-size", 256), ("--flow-filter.epochs", 30),
                        ("--flow-filter.lr", 0.05), ("--head.epochs", 40),
                        ("--head.batch-size", 256)]:  # fmt: skip
        own = r" (?:(?! --).)*?\(default: " + re.escape(str(value)) + r"\)"
        assert re.search(re.escape(flag) + own, text), flag


def test_regular_cluster_aided_help_agrees_with_the_presets_doc(monkeypatch):
    # docs/presets.md: the original release's regular classifier is FC(x) + FC(x), two
    # maps of x without the cluster prior (issue 33 found the help saying FC([z, prior]))
    monkeypatch.setenv("COLUMNS", "100000")
    text = _help("fit")
    own = re.search(r"--regular-cluster-aided BOOL ((?:(?! --).)*)", text).group(1)
    assert "FC(x) + FC(x)" in own and "without the cluster prior" in own
    assert "FC([" not in own
    doc = Path(__file__).resolve().parents[1] / "docs" / "presets.md"
    lines = doc.read_text(encoding="utf-8").splitlines()
    regular = next(line for line in lines if line.startswith("| regular classifier"))
    assert "`FC(x) + FC(x)`" in regular and "no cluster prior" in regular
