"""Which images a ``dlsa train`` run trained on: its held-out validation split, and the
provenance ``dlsa extract`` records in a feature file (``backbone_trained_on``).

A run folder records its image root and split list (resolved), the digest of the image
list it read, and in ``holdout.json`` the images it held out of training to choose its
epoch on (relative to the root). :func:`run_images` reads them back; the images it
trained on are the listed ones less the held-out ones. A run that does not say (a
``dlsa demo`` backbone, or a run whose images have changed or moved since) gives None,
and its features are of unknown provenance.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlsa.backbones.stream import ImageSource, read_source
from dlsa.errors import DLSAInputError

HOLDOUT_FILE = "holdout.json"
"""The run folder's list of held-out images (relative to ``--images``)."""
HOLDOUT_FRACTION = 0.2
"""At most this share of a class is held out."""
HOLDOUT_MIN_CLASS = 5
"""Classes with fewer images hold none out."""


def holdout_mask(labels: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """The images held out of training: per class ``min(cap, floor(20% of its images))``,
    none for a class of fewer than 5 images, drawn with ``seed``.

    Args:
        labels: int labels of shape (N,).
        cap: most images held out per class (0: none).
        seed: the run's seed.

    Returns:
        Boolean mask of shape (N,), True for a held-out image.

    Example:
        >>> int(holdout_mask(np.array([0] * 10 + [1] * 4), 20, 0).sum())
        2
    """
    held = np.zeros(len(labels), dtype=bool)
    if cap <= 0:
        return held
    rng = np.random.default_rng([seed, 0x401D])
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < HOLDOUT_MIN_CLASS:
            continue
        k = min(cap, math.floor(HOLDOUT_FRACTION * len(members)))
        held[rng.choice(members, size=k, replace=False)] = True
    return held


def subset(source: ImageSource, keep: np.ndarray) -> ImageSource:
    """The images of ``source`` where ``keep`` (N,) is True."""
    idx = np.flatnonzero(keep).tolist()
    return ImageSource(
        paths=tuple(source.paths[i] for i in idx), labels=source.labels[idx],
        where=tuple(source.where[i] for i in idx),
        relative=tuple(source.relative[i] for i in idx),
        class_names=source.class_names, skipped=source.skipped,
    )  # fmt: skip


def holdout_record(root: str, split_list: str | None, cap: int, held: ImageSource) -> str:
    """The JSON text of ``holdout.json``: the root, split list, cap and held-out files."""
    data = {
        "images": str(Path(root).resolve()),
        "split_list": None if split_list is None else str(Path(split_list).resolve()),
        "per_class_cap": cap,
        "files": list(held.relative),
    }
    return json.dumps(data, indent=1)


@dataclass(frozen=True)
class RunImages:
    """The images of a ``dlsa train`` run, as resolved paths.

    Attributes:
        trained: the images it trained on.
        held_out: the images it held out (empty without a holdout).
        root: its resolved ``--images``.
    """

    trained: frozenset[Path]
    held_out: frozenset[Path]
    root: Path


def run_images(run: str | Path, meta: dict[str, Any]) -> RunImages | None:
    """The images the run in folder ``run`` (metadata ``meta`` of its ``best.json``)
    trained on and held out; None when it does not record them or they changed since
    (their digest differs), so nobody can tell."""
    root, split_list = meta.get("images_root"), meta.get("split_list_file")
    if root is None or meta.get("train_data") is None:
        return None
    try:
        full = read_source(root, split_list, skip_missing=True, flag="--images")
    except (DLSAInputError, OSError):
        return None
    if full.digest() != meta["train_data"]:
        return None
    held_rel: set[str] = set()
    holdout = Path(run) / HOLDOUT_FILE
    if meta.get("holdout"):
        try:
            held_rel = set(json.loads(holdout.read_text(encoding="utf-8"))["files"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
    trained, held = set(), set()
    for path, rel in zip(full.paths, full.relative, strict=True):
        (held if rel in held_rel else trained).add(path.resolve())
    return RunImages(frozenset(trained), frozenset(held), Path(root))


def provenance(paths: Iterable[Path], trained: frozenset[Path] | None) -> str:
    """ "seen" when the backbone trained on every one of ``paths``, "unseen" on none,
    "mixed" on some; "unknown" when ``trained`` is None.

    Example:
        >>> provenance([Path("/a"), Path("/b")], frozenset({Path("/a")}))
        'mixed'
    """
    if trained is None:
        return "unknown"
    hits = [p.resolve() in trained for p in paths]
    if all(hits):
        return "seen"
    return "unseen" if not any(hits) else "mixed"
