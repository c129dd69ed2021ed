"""`dlsa extract` sharded over 2 gloo processes vs one process: one file, same rows.

One ``torch.multiprocessing.spawn`` of 2 ranks runs both sharded extractions (a good
list of 7 images, so the shares are 3 and 4 rows, and a list whose last image, in rank
1's share, is not an image); the single-process extraction and the comparisons happen in
the test process.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from dlsa.backbones import ResNet, save_checkpoint
from dlsa.backbones.shard_extract import share_bounds
from dlsa.cli import main
from dlsa.io.file_map import read_file_map

N_IMAGES = 7  # not divisible by the 2 ranks
TOLERANCE = 1e-5
"""Largest |sharded - single process| of any feature (features are O(1)): the ranks embed
in batches of 2, the single process in one batch of 7, so only the batch size of the
float32 convolutions differs (measured on this CPU: 5.4e-8, features up to 0.5)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _extract(root: Path, split_list: str, out: Path, *extra: str) -> list[str]:
    return ["-q", "extract", "--backbone", str(root / "backbone"), "--images", str(root),
            "--split-list", str(root / split_list), "--out", str(out), *extra]  # fmt: skip


def _worker(rank: int, world: int, port: int, root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        data = Path(root)
        codes = {
            "good": main(_extract(data, "good.txt", data / "out" / "f.h5", "--batch-size", "2")),
            "bad": main(_extract(data, "bad.txt", data / "bad-out" / "f.h5")),
        }
        (data / f"codes-{rank}.json").write_text(json.dumps(codes))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Images, split lists and a backbone; the 2 ranks' extractions run once here."""
    data = tmp_path_factory.mktemp("extract")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(N_IMAGES):
        pixels = (rng.random((20, 24, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(data / f"{i}.png")
        lines.append(f"{i}.png {i % 3}\n")
    (data / "good.txt").write_text("".join(lines))
    (data / "broken.png").write_bytes(b"not an image")
    (data / "bad.txt").write_text("".join(lines[:-1]) + "broken.png 0\n")
    net = ResNet(n_classes=3, widths=(4, 8, 8), generator=torch.Generator().manual_seed(0))
    save_checkpoint(net, data / "backbone", metadata={"image_size": 16})
    mp.spawn(_worker, args=(2, _free_port(), str(data)), nprocs=2, join=True)
    return data


def test_sharded_file_equals_the_single_process_file(root: Path, tmp_path: Path) -> None:
    single = tmp_path / "f.h5"
    assert main(_extract(root, "good.txt", single)) == 0
    sharded = root / "out" / "f.h5"
    with h5py.File(single, "r") as a, h5py.File(sharded, "r") as b:
        assert sorted(a.keys()) == sorted(b.keys()) == ["features", "labels"]
        assert dict(a.attrs) == dict(b.attrs)
        assert a["features"].shape == b["features"].shape == (N_IMAGES, 8)
        assert a["features"].dtype == b["features"].dtype
        worst = float(np.abs(a["features"][...] - b["features"][...]).max())
        assert worst <= TOLERANCE
        assert np.array_equal(a["labels"][...], b["labels"][...])
    files = (single.parent / "f.h5.files.csv").read_text()
    assert (sharded.parent / "f.h5.files.csv").read_text() == files
    paths = read_file_map(single.parent / "f.h5.files.csv")
    assert len(paths) == N_IMAGES and paths[0].endswith("0.png") and paths[-1].endswith("6.png")
    assert sorted(p.name for p in sharded.parent.iterdir()) == ["f.h5", "f.h5.files.csv"]
    codes = [json.loads((root / f"codes-{r}.json").read_text()) for r in range(2)]
    assert [c["good"] for c in codes] == [0, 0]


def test_a_rank_that_fails_stops_every_rank_and_nothing_is_written(root: Path) -> None:
    codes = [json.loads((root / f"codes-{r}.json").read_text()) for r in range(2)]
    assert [c["bad"] for c in codes] == [2, 2]
    assert list((root / "bad-out").iterdir()) == []  # no file, no shard folder


def test_shares_are_contiguous_and_cover_every_row_once() -> None:
    for n, world in [(7, 2), (2, 3), (10, 4)]:
        bounds = [share_bounds(n, r, world) for r in range(world)]
        assert [i for start, stop in bounds for i in range(start, stop)] == list(range(n))
        sizes = [stop - start for start, stop in bounds]
        assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("device", ["gpu", *([] if torch.cuda.is_available() else ["cuda"])])
def test_an_unusable_device_is_a_one_line_error(
    root: Path, tmp_path: Path, capsys, device: str
) -> None:
    code = main(_extract(root, "good.txt", tmp_path / "f.h5", "--device", device))
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"dlsa extract: error: --device {device!r}")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "f.h5").exists()
