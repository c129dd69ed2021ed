"""The README's set-up commands are what CI runs: `.ci/run` holds the test command
verbatim, and both commands create and use a virtual environment with the CPU wheel."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    """The ```bash blocks of a Markdown text, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [re.sub(r"\\\n\s*", "", b).strip() for b in blocks]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    readme = _bash_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    tests = [b for b in readme if b.endswith("python -m pytest")]
    assert len(tests) == 1, tests
    ci = re.sub(r"\\\n\s*", "", (ROOT / ".ci" / "run").read_text(encoding="utf-8"))
    assert tests[0] in ci.splitlines()


def test_both_setup_commands_use_a_venv_and_the_cpu_wheel() -> None:
    readme = _bash_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    setup = [b for b in readme if b.endswith(("dlsa demo", "python -m pytest"))]
    assert len(setup) == 2
    for command in setup:
        steps = [s.strip() for s in command.split("&&")]
        assert "python3 -m venv .venv" in steps and ". .venv/bin/activate" in steps
        torch_step = next(s for s in steps if s.startswith("pip install torch"))
        assert "--index-url https://download.pytorch.org/whl/cpu" in torch_step
        assert steps.index(". .venv/bin/activate") < steps.index(torch_step)
