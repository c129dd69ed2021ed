"""Images/s of `dlsa train` against a bare training loop on synthetic tensors.

The bare loop (same backbone, SGD, cross-entropy, batches already on the device) is the
ceiling the input pipeline (file decoding, random resized crop, DataLoader workers) can
reach; the ratio says how far `dlsa train` is from it. Throughput of `dlsa train` is timed
inside epochs (from the end of each epoch's first step to its last), so neither worker
start-up nor the per-epoch checkpoint counts.

CPU, the small ResNet (what docs/speed.md reports):

    OMP_NUM_THREADS=1 python -m benchmarks.speed.bench_train --workers 1

One GPU, ResNet-50 at 224 px, with and without bfloat16 (not run here: no GPU):

    python -m benchmarks.speed.bench_train --arch resnet50 --size 224 --image-side 320 \\
        --n-images 4096 --batch-size 128 --workers 8 --device cuda --epochs 2
    python -m benchmarks.speed.bench_train --arch resnet50 --size 224 --image-side 320 \\
        --n-images 4096 --batch-size 128 --workers 8 --device cuda --epochs 2 --bf16

What one DataLoader worker delivers (decode, crop, flip; with ``--augment paco`` also
PaCo's colour jitter / RandAugment / grayscale / blur), to size ``--workers``:

    OMP_NUM_THREADS=1 python -m benchmarks.speed.bench_train --views-only --size 224 \\
        --image-side 320 --n-images 256
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dlsa.backbones.image_train import train_images
from dlsa.backbones.stream import TrainViews, read_source
from dlsa.backbones.train_config import ImageTrainConfig, build_backbone


def make_images(root: Path, n: int, side: int, n_classes: int) -> Path:
    """n random RGB JPEGs of side x side in class folders; returns the folder."""
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"c{i % n_classes}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)
    return root


def views_rate(images: Path, size: int, augment: str, views: int) -> float:
    """Images/s of one process cutting ``views`` training views of each image."""
    source = read_source(images, None, skip_missing=False, flag="--images")
    data = TrainViews(
        source, size=size, mode="RGB", views=views, scale=(0.08, 1.0), flip=True, seed=0,
        augment=augment,
    )  # fmt: skip
    start = time.perf_counter()
    for i in range(len(data)):
        data[(1, i, i)]
    return len(data) / (time.perf_counter() - start)


def pipeline_rate(cfg: ImageTrainConfig) -> float:
    """Images/s of `dlsa train` inside its epochs."""
    stamps: dict[int, list[float]] = {}

    def hook(epoch: int, step: int) -> None:
        if cfg.device.startswith("cuda"):
            torch.cuda.synchronize()
        stamps.setdefault(epoch, []).append(time.perf_counter())

    train_images(cfg, on_step=hook)
    images = sum((len(t) - 1) * cfg.batch_size for t in stamps.values())
    seconds = sum(t[-1] - t[0] for t in stamps.values())
    return images / seconds


def bare_rate(cfg: ImageTrainConfig, n_classes: int, steps: int) -> float:
    """Images/s of the same backbone trained on random tensors already on the device."""
    device = torch.device(cfg.device)
    model = build_backbone(cfg, n_classes, torch.Generator().manual_seed(0)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(1)
    x = torch.rand((cfg.batch_size, 3, cfg.size, cfg.size), generator=g).to(device)
    y = torch.arange(cfg.batch_size, device=device) % n_classes
    model.train()
    for step in range(steps + 1):
        if step == 1:  # the first step (allocation, kernel choice) is not timed
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast(device.type, torch.bfloat16, enabled=cfg.bf16):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * cfg.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet8")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--image-side", type=int, default=40, help="side of the JPEG files")
    parser.add_argument("--n-images", type=int, default=512)
    parser.add_argument("--n-classes", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--augment", default="crop-flip", choices=["crop-flip", "paco"])
    parser.add_argument("--views-only", action="store_true", help="time one worker's views")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        images = make_images(Path(tmp) / "images", args.n_images, args.image_side, args.n_classes)
        if args.views_only:
            print(f"| augmentation ({args.image_side}px JPEG -> {args.size}px) | views "
                  "| images/s, one process |\n|---|--:|--:|")  # fmt: skip
            for augment, views in (("crop-flip", 1), ("crop-flip", 2), ("paco", 2)):
                rate = views_rate(images, args.size, augment, views)
                print(f"| {augment} | {views} | {rate:.0f} |")
            return
        cfg = ImageTrainConfig(
            images=str(images), out=str(Path(tmp) / "run"), arch=args.arch, size=args.size,
            epochs=args.epochs, batch_size=args.batch_size, workers=args.workers,
            device=args.device, bf16=args.bf16, progress=False, augment=args.augment,
        )  # fmt: skip
        piped = pipeline_rate(cfg)
    steps = max(5, (args.n_images // args.batch_size - 1) * args.epochs)
    bare = bare_rate(cfg, args.n_classes, steps)
    print(
        f"{args.arch} {args.size}px batch {args.batch_size} on {args.device}"
        f"{' bf16' if args.bf16 else ''}, {args.augment}, {args.workers} workers: "
        f"dlsa train {piped:.0f} img/s, "
        f"bare loop on synthetic tensors {bare:.0f} img/s, ratio bare/train {bare / piped:.2f}"
    )


if __name__ == "__main__":
    main()
