"""`dlsa train` under torch.distributed: 2 gloo processes on the CPU vs one process.

One ``torch.multiprocessing.spawn`` of 2 ranks runs every DDP training of this file (CE and
PaCo for one epoch, CBS straight and interrupted + resumed); the single-process runs and
the comparisons happen in the test process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_train_cli import Stop, assert_same, config, make_images, state_tensors, stop_at

from dlsa.backbones.batches import EpochBatches
from dlsa.backbones.image_train import train_images

TOLERANCE = 1e-4
"""Largest |DDP - single process| of any weight or buffer after one epoch (3 SGD steps):
the two differ only in the order float32 sums are taken (batch-norm statistics, gradient
all-reduce)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, data: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        root, runs = Path(data), Path(out)
        for loss in ("ce", "paco"):
            train_images(config(root, runs / f"ddp-{loss}", loss=loss, epochs=1, sync_bn=True))
        train_images(config(root, runs / "ddp-straight", loss="cbs"))
        broken = config(root, runs / "ddp-resumed", loss="cbs")
        try:
            train_images(broken, on_step=stop_at(2, 1))
        except Stop:
            pass
        train_images(dataclasses.replace(broken, resume=True))
        try:  # epoch 1 of 2 under DDP, then killed: resumed by one process in a test
            two = config(root, runs / "ddp-killed", loss="ce", sync_bn=True)
            train_images(two, on_step=stop_at(2, 0))
        except Stop:
            pass
        bad = config(root.parent / "with-bad", runs / "ddp-bad", loss="ce", epochs=1)
        train_images(dataclasses.replace(bad, sync_bn=True, skip_bad_images=True))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    data = tmp_path_factory.mktemp("images")
    make_images(data)
    make_images(data.parent / "with-bad")  # the same images, one of them unreadable
    (data.parent / "with-bad" / "train" / "c0" / "3.png").write_bytes(b"not a png")
    out = tmp_path_factory.mktemp("runs")
    mp.spawn(_worker, args=(2, _free_port(), str(data), str(out)), nprocs=2, join=True)
    return data, out


@pytest.mark.parametrize("loss", ["ce", "paco"])
def test_one_ddp_epoch_equals_one_process_with_the_global_batch(
    runs: tuple[Path, Path], tmp_path: Path, loss: str
) -> None:
    data, out = runs
    train_images(config(data, tmp_path / "single", loss=loss, epochs=1, sync_bn=True))
    ddp, single = state_tensors(out / f"ddp-{loss}", 1), state_tensors(tmp_path / "single", 1)
    assert ddp.keys() == single.keys()
    worst = max(float((ddp[k].double() - single[k].double()).abs().max()) for k in ddp)
    assert worst < TOLERANCE
    moved = max(float((single[k] - single[k.replace("model.", "best.")]).abs().max())
                for k in single if k.startswith("model."))  # fmt: skip
    assert moved == 0.0  # one epoch: the kept epoch is the last
    saved = json.loads((out / f"ddp-{loss}" / "state" / "epoch-0001" / "state.json").read_text())
    assert saved["fingerprint"]["world_size"] == 2


def test_a_skipped_image_leaves_ddp_equal_to_one_process(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    """The ranks' batches differ in size when one skips an unreadable image; each image,
    not each rank, must weigh the same in the gradient."""
    data, out = runs
    cfg = config(data.parent / "with-bad", tmp_path / "single", loss="ce", epochs=1)
    train_images(dataclasses.replace(cfg, sync_bn=True, skip_bad_images=True))
    ddp, single = state_tensors(out / "ddp-bad", 1), state_tensors(tmp_path / "single", 1)
    worst = max(float((ddp[k].double() - single[k].double()).abs().max()) for k in ddp)
    assert worst < TOLERANCE
    saved = json.loads((out / "ddp-bad" / "state" / "epoch-0001" / "state.json").read_text())
    assert saved["skipped_unreadable"] == [1]


def test_resume_under_ddp_gives_the_uninterrupted_weights(runs: tuple[Path, Path]) -> None:
    _, out = runs
    assert_same(state_tensors(out / "ddp-straight", 2), state_tensors(out / "ddp-resumed", 2))


def test_a_ddp_run_resumes_on_another_number_of_processes(
    runs: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Killed after epoch 1 of 2 on 2 processes, finished by one: the weights of one
    process running both epochs, up to float summation order (same global batch)."""
    data, out = runs
    shutil.copytree(out / "ddp-killed", tmp_path / "resumed")
    cfg = config(data, tmp_path / "resumed", loss="ce", sync_bn=True)
    with caplog.at_level("WARNING"):
        train_images(dataclasses.replace(cfg, resume=True))
    assert "resuming a run of 2 processes with 1" in caplog.text
    train_images(config(data, tmp_path / "single", loss="ce", sync_bn=True))
    resumed, single = state_tensors(tmp_path / "resumed", 2), state_tensors(tmp_path / "single", 2)
    assert resumed.keys() == single.keys()
    worst = max(float((resumed[k].double() - single[k].double()).abs().max()) for k in single)
    assert worst < TOLERANCE


def test_rank_shares_are_disjoint_and_make_the_global_batch() -> None:
    labels = np.repeat(np.arange(4), [40, 10, 5, 1])
    for order in ("shuffle", "balanced"):
        one = EpochBatches(labels, order=order, batch_size=8, seed=3)
        ranks = [
            EpochBatches(labels, order=order, batch_size=8, seed=3, rank=r, world_size=2)
            for r in range(2)
        ]
        for b in (one, *ranks):
            b.set_epoch(5)
        for whole, *shares in zip(one, *ranks, strict=True):
            assert [item for share in shares for item in share] == whole
    one.set_epoch(1)
    first = [i for batch in one for _, _, i in batch]
    one.set_epoch(2)
    assert first != [i for batch in one for _, _, i in batch]
    counts = np.bincount(labels[one.global_order(7)], minlength=4)
    assert counts.min() > 0  # balanced draws reach the one-image class
