"""Atomic files and folders: nothing half-written, stale temporaries of dead runs removed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dlsa.io.atomic import atomic_dir, remove_stale_temporaries, temporary_name, write_atomic


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _temporary_of(dest, pid: int):
    name = temporary_name(dest.name).split(".")
    name[-2] = str(pid)  # .<name>.dlsa-tmp.<host>.<pid>.<random>
    return dest.with_name(".".join(name))


def test_atomic_dir_replaces_the_destination_or_leaves_it(tmp_path):
    dest = tmp_path / "out"
    with atomic_dir(dest) as tmp:
        (tmp / "a.txt").write_text("one")
    with pytest.raises(RuntimeError), atomic_dir(dest) as tmp:
        (tmp / "a.txt").write_text("two")
        raise RuntimeError("boom")
    assert (dest / "a.txt").read_text() == "one"
    with atomic_dir(dest) as tmp:
        (tmp / "b.txt").write_text("three")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in dest.iterdir()) == ["b.txt"]


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    dest = tmp_path / "killed"
    stale = _temporary_of(dest, _dead_pid())
    stale.mkdir()
    (stale / "model.json").write_text("{}")
    stale_file = _temporary_of(tmp_path / "p.csv", _dead_pid())
    stale_file = stale_file.with_name(stale_file.name + ".csv")
    stale_file.write_text("half")
    live = _temporary_of(dest, os.getpid())
    live.mkdir()
    other = tmp_path / ".killed.unrelated"
    other.mkdir()
    with atomic_dir(dest) as tmp:
        (tmp / "x").write_text("x")
    write_atomic(tmp_path / "p.csv", lambda p: p.write_text("ok"))
    assert not stale.exists() and not stale_file.exists()
    assert live.exists() and other.exists()
    assert remove_stale_temporaries(dest) == []


def test_temporaries_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "d"):
            pass
    finally:
        os.umask(umask)
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
