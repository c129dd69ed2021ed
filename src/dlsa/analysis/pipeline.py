"""The whole two-stage pipeline on real images: Fashion-MNIST-LT -> CE backbone ->
features -> the reference base method and the default's chosen model -> one table.

This is what ``dlsa demo`` runs. Model selection uses the validation split carved from
the long-tailed train set, images no model trains on: it picks the backbone's epoch, and
its features are what the stage-2 selection and safeguard decide on (``--val`` of
``dlsa fit``); the balanced test set is used once, at the end.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dlsa.analysis.pair import Step, fit_and_evaluate_pair
from dlsa.backbones import extract_to_file, save_checkpoint, train_backbone
from dlsa.config import DLSAConfig, to_dict
from dlsa.datasets.fashion_mnist import FASHION_MNIST_ROOT, fashion_mnist_lt
from dlsa.engine.progress import Phase
from dlsa.io.features import load_features

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSettings:
    """Settings of ``dlsa demo``."""

    data_root: str = FASHION_MNIST_ROOT
    """Folder of the Fashion-MNIST idx files (Debian package dataset-fashion-mnist)."""
    imbalance: float = 1000.0
    """rho = n_max / n_min of the long-tailed train set. 1000 gives a few-shot tail: with
    ``n_max`` 6000 the classes keep 6000 ... 27, 12, 6 images, 5400 ... 24, 11, 5 for
    training after the validation split (two classes under 20, the "few" group), and
    every class keeps at least one validation image."""
    n_max: int = 6000
    """Train images of the largest class before the validation split (at most 6000)."""
    seed: int = 0
    """Seed of the subset, the backbone and DLSA."""
    backbone_epochs: int = 30
    """Epochs of the stage-1 ResNet (best epoch kept by validation balanced accuracy)."""
    backbone_sampler: Literal["ce", "cbs"] = "ce"
    """Stage-1 sampler: plain cross-entropy or class-balanced sampling."""
    backbone_batch_size: int = 128
    """Stage-1 batch size."""
    device: str = "cpu"
    """Torch device."""


@dataclass
class DemoResult:
    """Everything the demo measured."""

    metrics: dict[str, dict[str, float | None]]
    calibration: dict[str, dict[str, float | None]]
    separation: list[float | None]
    stages: list[dict[str, Any]]
    levels: list[dict[str, Any]]
    validation: dict[str, Any] | None
    selection: dict[str, Any] | None = None
    reference: str = "balsoftmax"
    chosen: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    backbone: dict[str, Any] = field(default_factory=dict)
    counts: list[int] = field(default_factory=list)


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    phase = Phase(f"demo: {name}", counter="")
    yield
    timings[name] = time.perf_counter() - start
    logger.info("%s took %.1f s", name, timings[name])
    phase.end("done")


def run_demo(
    settings: DemoSettings, config: DLSAConfig, folder: Path, *, progress: bool = True
) -> DemoResult:
    """Run the pipeline, writing the backbone, features and models under ``folder``."""
    timings: dict[str, float] = {}
    with _timed(timings, "data"):
        splits = fashion_mnist_lt(
            settings.data_root,
            imbalance=settings.imbalance,
            seed=settings.seed,
            n_max=settings.n_max,
        )
    with _timed(timings, "stage 1: backbone"):
        model, history = train_backbone(
            splits.train_images,
            splits.train_labels,
            val_images=splits.val_images,
            val_labels=splits.val_labels,
            loss=settings.backbone_sampler,
            epochs=settings.backbone_epochs,
            batch_size=settings.backbone_batch_size,
            seed=settings.seed,
            device=settings.device,
            flip=True,
            progress=progress,
        )
        meta = {"history": history.to_dict(), "image_size": int(splits.train_images.shape[1])}
        save_checkpoint(model, folder / "backbone", metadata=meta)
    with _timed(timings, "features"):
        backbone_id = f"resnet8-{settings.backbone_sampler}-{splits.name}-seed{settings.seed}"
        for split, images, labels in (
            ("train", splits.train_images, splits.train_labels),
            ("val", splits.val_images, splits.val_labels),
            ("test", splits.test_images, splits.test_labels),
        ):
            extract_to_file(
                model, images, labels, folder / f"{split}.h5", split, backbone_id,
                device=settings.device, progress=progress,
                backbone_trained_on="seen" if split == "train" else "unseen",
            )  # fmt: skip
    train = load_features(folder / "train.h5")
    val = load_features(folder / "val.h5")
    test = load_features(folder / "test.h5")
    config = dataclasses.replace(config, random_state=settings.seed, verbose=progress)
    fit_times: dict[str, float] = {}
    evaluated: dict[str, float] = {}

    def around(step: Step) -> AbstractContextManager[None]:
        return _timed(evaluated, "evaluation") if step == "evaluate" else nullcontext()

    # the temperature on the val split: one pass
    models, pair = fit_and_evaluate_pair(
        config, train, test, folder, val=val, calibrate=True, timings=fit_times, around=around
    )
    timings["stage 2: reference"] = fit_times["fit_base"]
    timings["stage 2: chosen model"] = fit_times["fit_dlsa"]
    timings["calibrate"] = fit_times["calibrate"]
    timings |= evaluated
    evals = pair["evals"]
    return DemoResult(
        metrics={name: e["metrics"] for name, e in evals.items()},
        calibration={
            name: {k: e["calibration"][k] for k in ("ece", "nll", "brier")}
            | {"temperature": models[name].temperature_}
            for name, e in evals.items()
        },
        separation=[s["accuracy"] for s in evals["dlsa"]["separation"]],
        stages=pair["stage_comparison"],
        levels=models["dlsa"].reports_,
        validation=models["dlsa"].validation_,
        selection=models["dlsa"].selection_,
        reference=pair["reference"],
        chosen=pair["chosen"],
        timings=timings,
        backbone={
            "best_epoch": history.best_epoch,
            "val_balanced_accuracy": history.epochs[history.best_epoch - 1].val_balanced_accuracy,
        },
        counts=np.bincount(train.y).tolist(),
    )


def demo_record(result: DemoResult, settings: DemoSettings, config: DLSAConfig) -> dict[str, Any]:
    """JSON-ready record of a demo run."""
    return {
        "settings": dataclasses.asdict(settings),
        "config": to_dict(config),
        **dataclasses.asdict(result),
    }
