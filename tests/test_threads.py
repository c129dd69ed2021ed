"""Torch threads that leave busy cores alone (dlsa.engine.threads, ``--threads``)."""

from __future__ import annotations

import pytest
import torch

import dlsa.cli.parser as parser
import dlsa.engine.threads as threads
from dlsa.cli import main


@pytest.fixture
def stat(tmp_path, monkeypatch):
    """A /proc/stat whose cpu line moves from ``before`` to ``after`` during the window."""
    path = tmp_path / "stat"

    def write(before: str, after: str) -> None:
        path.write_text(f"cpu {before}\ncpu0 1 2 3 4\n")
        monkeypatch.setattr(threads.time, "sleep", lambda s: path.write_text(f"cpu {after}\n"))

    return path, write


def test_busy_cores_are_the_busy_share_of_the_window_times_the_cores(stat, monkeypatch):
    path, write = stat
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    # user nice system idle iowait ...: 300 of 400 ticks busy, iowait is not busy
    write("100 0 100 800 50 0 0 0", "300 0 200 850 100 0 0 0")
    assert threads.busy_cores(stat=path) == pytest.approx(300 / 400 * 4)


def test_free_threads_leave_the_busy_cores_and_keep_one(stat, monkeypatch):
    path, write = stat
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(threads.torch, "get_num_threads", lambda: 4)
    write("0 0 0 0 0", "140 0 0 260 0")  # 1.4 cores busy
    assert threads.free_threads(stat=path) == 3
    write("0 0 0 0 0", "400 0 0 0 0")  # every core busy
    assert threads.free_threads(stat=path) == 1
    write("0 0 0 0 0", "0 0 0 400 0")  # idle: torch's default
    assert threads.free_threads(stat=path) == 4


def test_unreadable_stat_keeps_torchs_default(tmp_path):
    missing = tmp_path / "nope"
    assert threads.busy_cores(0.0, missing) is None
    assert threads.free_threads(0.0, missing) == torch.get_num_threads()


def test_the_cli_sets_threads_and_respects_omp_num_threads(tmp_path, monkeypatch, capsys):
    before = torch.get_num_threads()
    args = ["evaluate", "--model", str(tmp_path / "none"), "--features", str(tmp_path / "f")]
    try:
        assert main(["--threads", "1", *args]) == 2  # the command fails; threads are set
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        monkeypatch.setattr(parser, "free_threads", lambda *a: pytest.fail("measured"))
        torch.set_num_threads(2)
        assert main(args) == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert main(["--threads", "0", *args]) == 2
    assert "must be auto or a positive number" in capsys.readouterr().err
