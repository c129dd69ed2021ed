"""Issue 32: long runs print phase lines on stderr when it is not a terminal (a CI log,
nohup, a notebook cell); bars on a terminal; -q silences both."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dlsa.backbones import extract_features
from dlsa.cli import main
from dlsa.datasets.synthetic import make_long_tailed_features
from dlsa.engine import progress
from dlsa.engine.progress import PROGRESS_LOGGER, Phase, fmt_seconds, show_progress_lines
from dlsa.io.features import save_features

FIT = [
    "--selection.bases", "balsoftmax,ce",
    "--selection.folds", "2",
    "--selection.tau-grid", "1.0",
    "--selection.proportions", "0.99",
    "--flow-filter.mixture.n-components", "8",
    "--flow-filter.epochs", "2",
    "--head.epochs", "3",
]  # fmt: skip


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The progress lines, however an earlier in-process ``main`` left the logger."""
    log = logging.getLogger(PROGRESS_LOGGER)
    saved = log.propagate, log.level, list(log.handlers)
    log.propagate, log.handlers = True, []
    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    yield caplog
    log.propagate, log.handlers = saved[0], saved[2]
    log.setLevel(saved[1])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = make_long_tailed_features(n_classes=8, n_features=6, n_max=80, imbalance=20, seed=0)
    root = tmp_path_factory.mktemp("feat")
    save_features(root / "train.h5", d.X_train, d.y_train, split="train")
    save_features(root / "test.npz", d.X_test, d.y_test, split="test")
    return root


def test_a_phase_logs_at_most_every_interval_and_always_its_end(lines) -> None:
    slow = Phase("selection: base method", 4, "{done}/{total} fold fits", interval=1e9)
    assert [slow.advance() for _ in range(4)] == [False] * 4
    assert slow.end("2 candidates scored")
    fast = Phase("features", 10, "{done}/{total} images", interval=0)
    assert fast.update(5, "100 images/s")
    messages = [r.getMessage() for r in lines.records]
    assert messages[0].startswith("selection: base method: 4/4 fold fits, 2 candidates scored (")
    assert messages[1].startswith("features: 5/10 images, 100 images/s (")
    assert len(messages) == 2
    assert [fmt_seconds(s) for s in (4.06, 41, 725, 7500)] == [
        "4.1 s", "41 s", "12 min 05 s", "2 h 05 min",
    ]  # fmt: skip


def test_lines_are_shown_off_a_terminal_unless_quiet() -> None:
    log = logging.getLogger(PROGRESS_LOGGER)
    saved = log.propagate, log.level, list(log.handlers)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    try:
        assert show_progress_lines(False, io.StringIO())
        assert log.getEffectiveLevel() == logging.INFO and not log.propagate
        assert not show_progress_lines(True, io.StringIO())  # -q
        assert not show_progress_lines(False, Terminal())  # the bars show instead
        assert len(log.handlers) == 1 + len(saved[2]) - sum(
            isinstance(h, progress._StderrHandler) for h in saved[2]
        )
    finally:
        log.propagate, log.handlers = saved[0], saved[2]
        log.setLevel(saved[1])


def _dlsa(*argv: str, stderr: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(stderr, "w") as err:  # a file: not a terminal, as in a CI log
        return subprocess.run(
            [sys.executable, "-m", "dlsa", *argv], env=env, stdout=subprocess.PIPE,
            stderr=err, text=True, timeout=300, check=False,
        )  # fmt: skip


def test_fit_logs_its_phases_when_stderr_is_a_file_and_nothing_with_quiet(files, tmp_path):
    argv = ["fit", "--train", str(files / "train.h5"), "--test", str(files / "test.npz")]
    done = _dlsa(*argv, "--out", str(tmp_path / "run"), *FIT, stderr=tmp_path / "log")
    assert done.returncode == 0
    log = (tmp_path / "log").read_text()
    assert "\r" not in log  # no bar frames
    got = log.splitlines()
    for start in (
        "dlsa: stage 2: reference balsoftmax: fitting on ",
        "dlsa: selection: base method: 4/4 fold fits, 2 candidates scored, chosen: ",
        "dlsa: selection: DLSA on the chosen base: ",
        "dlsa: fit: flow filter: epoch 2/2, loss ",
        "dlsa: stage 2: configured model (selection): fitted, chosen: ",
    ):
        assert any(line.startswith(start) for line in got), (start, log)
    assert done.stdout  # the results still go to stdout
    quiet = _dlsa("-q", *argv, "--out", str(tmp_path / "q"), *FIT, stderr=tmp_path / "qlog")
    assert quiet.returncode == 0 and quiet.stdout
    assert (tmp_path / "qlog").read_text() == ""


class _Embed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)[:, :4])


def test_extraction_logs_images_done_and_rate(lines, monkeypatch) -> None:
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    images = np.zeros((10, 2, 2), np.uint8)
    extract_features(_Embed(), images, batch_size=4, progress=True)
    messages = [r.getMessage() for r in lines.records]
    assert messages[:3] == [m for m in messages if m.startswith("features: ")][:3]
    assert messages[0].startswith("features: 4/10 images, ")
    assert messages[-1].startswith("features: 10/10 images, ") and "images/s" in messages[-1]
    lines.clear()
    extract_features(_Embed(), images, batch_size=4, progress=False)
    assert lines.records == []


def test_dlsa_train_logs_its_epochs(tmp_path, capsys) -> None:
    """``dlsa train`` on tiny image folders (not -q): one line per stage-1 epoch with the
    loss and the validation accuracy, on a stderr that is not a terminal."""
    from test_train_cli import make_images

    make_images(tmp_path)
    argv = ["train", "--images", str(tmp_path / "train"), "--val-images",
            str(tmp_path / "val"), "--out", str(tmp_path / "run"), "--epochs", "2",
            "--batch-size", "6", "--size", "16", "--widths", "4,8,8",
            "--workers", "0"]  # fmt: skip
    log = logging.getLogger(PROGRESS_LOGGER)
    saved = log.propagate, log.level, list(log.handlers)
    try:
        assert main(argv) == 0
    finally:
        log.propagate, log.handlers = saved[0], saved[2]
        log.setLevel(saved[1])
    err = capsys.readouterr().err
    epochs = [line for line in err.splitlines() if line.startswith("dlsa: stage 1 (ce): epoch")]
    assert epochs[-1].startswith("dlsa: stage 1 (ce): epoch 2/2, loss "), err
    assert "val balanced accuracy" in epochs[-1] and "\r" not in err
