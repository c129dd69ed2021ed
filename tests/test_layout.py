"""The layout of the package: module names (read from the source tree; nothing is
imported)."""

from __future__ import annotations

from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "dlsa"


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package (a folder is its __init__)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def test_no_product_module_named_like_a_test():
    named = [name for name in _modules() if name.rpartition(".")[2].startswith("test_")]
    assert not named, f"modules of dlsa named test_* (pytest collects them): {named}"
