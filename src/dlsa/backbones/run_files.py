"""The run folder of ``dlsa train``: what a resumed run must share with the run it
continues, the full state written after every epoch (rank 0 only), and the kept epoch
as ``best.safetensors`` / ``best.json`` for ``dlsa extract``.

:class:`RunFiles` is a mixin of the training run in :mod:`dlsa.backbones.image_train`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch

from dlsa.backbones import distributed as D
from dlsa.backbones import run_state as S
from dlsa.backbones.checkpoint import Backbone, save_checkpoint
from dlsa.backbones.history import EpochRecord, Stage1History
from dlsa.backbones.paco import PaCoObjective
from dlsa.backbones.provenance import HOLDOUT_FILE, holdout_record
from dlsa.backbones.stream import ImageSource
from dlsa.backbones.train_config import ImageTrainConfig
from dlsa.errors import DLSAInputError
from dlsa.io.atomic import write_atomic
from dlsa.io.outputs import claim_folder, release_folder

logger = logging.getLogger(__name__)

RUN_ENTRIES = (S.STATE_DIR, "best.safetensors", "best.json", HOLDOUT_FILE)
"""What a run writes in its folder (all of it replaced by ``--overwrite``)."""


class RunFiles:
    """Reading and writing the run folder ``out`` (a mixin; see the module docstring)."""

    cfg: ImageTrainConfig
    device: torch.device
    info: D.DistInfo
    out: Path
    train_src: ImageSource
    val_src: ImageSource | None
    held: ImageSource | None
    full_digest: str
    model: Backbone
    objective: PaCoObjective | None
    optimizer: torch.optim.Optimizer
    history: Stage1History
    best_state: dict[str, torch.Tensor]
    skipped: list[int]

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run must share: settings and data (and, recorded but not
        required, the number of processes). ``holdout`` only when it held images out,
        so a run from before it existed resumes when it changes nothing."""
        fp = {
            **self.cfg.result_settings(),
            "train_data": self.train_src.digest(),
            "val_data": None if self.val_src is None else self.val_src.digest(),
            "world_size": self.info.world_size,
        }
        if self.held is None:
            fp.pop("holdout", None)
        return json.loads(json.dumps(fp))

    def _prepare_out(self) -> None:
        """Claim ``out`` for a new run (:func:`dlsa.io.outputs.claim_folder`: absent, empty,
        or with ``overwrite`` a run folder dlsa wrote, whose run is then removed); rank 0
        claims it, and every rank learns whether it could."""
        if self.cfg.resume:
            return
        has_run = (self.out / S.STATE_DIR).exists() or (self.out / "best.json").exists()
        if has_run and not self.cfg.overwrite:
            raise DLSAInputError(
                f"--out {self.out} holds a training run; pass --resume to continue it or "
                "--overwrite to start again"
            )
        error, failed = None, torch.zeros(1, device=self.device)
        if self.info.is_main:
            try:
                claim_folder(
                    self.out, overwrite=self.cfg.overwrite, command="train", whole=RUN_ENTRIES,
                    flag="--out",
                )  # fmt: skip
            except DLSAInputError as err:
                error = err
                failed += 1
        D.all_reduce_sum(failed, self.info)
        if error is not None:
            raise error
        if float(failed) > 0:
            raise DLSAInputError(f"--out {self.out}: rank 0 could not claim it; nothing written")

    def _release_out(self) -> None:
        """Un-claim ``out`` after a failure before any epoch was saved (rank 0)."""
        if self.info.is_main and not self.cfg.resume and not S.epoch_folders(self.out):
            release_folder(self.out)

    def _resume(self) -> int:
        tensors, saved = S.load_state(self.out)
        was, now = dict(saved["fingerprint"]), self.fingerprint()
        processes = was.pop("world_size", now["world_size"]), now.pop("world_size")
        S.check_fingerprint(was, now, self.out)
        if processes[0] != processes[1] and self.info.is_main:
            logger.warning(
                "resuming a run of %d processes with %d: the global batch is the same, so "
                "the result equals the uninterrupted run up to float summation order%s",
                *processes,
                "" if self.cfg.sync_bn else " (and batch-norm statistics: pass --sync-bn)",
            )
        self.model.load_state_dict(S.split_prefix(tensors, "model"))
        self.best_state = {
            k: v.to(self.device) for k, v in S.split_prefix(tensors, "best").items()
        }
        if self.objective is not None:
            self.objective.load_state_dict(S.split_prefix(tensors, "objective"))
        S.load_optimizer(self.optimizer, S.split_prefix(tensors, "optim"))
        h = saved["history"]
        records = tuple(EpochRecord(**r) for r in h["epochs"])
        self.history = Stage1History(records, h["best_epoch"], h["selection"])
        self.skipped = list(saved["skipped_unreadable"])
        logger.info("resuming %s after epoch %d", self.out, saved["epoch"])
        return int(saved["epoch"]) + 1

    def _save(self, epoch: int) -> None:
        record = self.history.epochs[-1]
        if self.history.best_epoch == epoch:
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        logger.info("stage-1 epoch %s", record)
        if not self.info.is_main:
            return
        tensors = {
            **S.with_prefix("model", self.model.state_dict()),
            **S.with_prefix("best", self.best_state),
            **S.with_prefix("optim", S.optimizer_tensors(self.optimizer)),
        }
        if self.objective is not None:
            tensors.update(S.with_prefix("objective", self.objective.state_dict()))
        info = {
            "history": self.history.to_dict(),
            "fingerprint": self.fingerprint(),
            "skipped_unreadable": self.skipped,
        }
        S.save_state(self.out, epoch, tensors, info)
        self._write_holdout()
        if self.history.best_epoch == epoch:
            save_checkpoint(self.model, self.out, "best", self._metadata())

    def _write_holdout(self) -> None:
        """Rank 0: list the held-out images in ``out/holdout.json`` (once)."""
        path = self.out / HOLDOUT_FILE
        if self.held is None or path.exists():
            return
        text = holdout_record(self.cfg.images, self.cfg.split_list, self.cfg.holdout, self.held)
        write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def _finish(self) -> tuple[Backbone, Stage1History]:
        self.model.load_state_dict(self.best_state)
        if self.info.is_main:
            save_checkpoint(self.model, self.out, "best", self._metadata())
        D.barrier(self.info)
        return self.model.eval(), self.history

    def _metadata(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "history": self.history.to_dict(),
            "image_size": cfg.size,
            "val_resize": cfg.val_resize,
            "mode": cfg.mode,
            "class_names": self.train_src.class_names,
            "config": json.loads(json.dumps(dataclasses.asdict(cfg))),
            "world_size": self.info.world_size,
            "train_images": len(self.train_src.paths),
            "images_root": str(Path(cfg.images).resolve()),
            "split_list_file": cfg.split_list and str(Path(cfg.split_list).resolve()),
            "train_data": self.full_digest,
            "holdout": 0 if self.held is None else len(self.held.paths),
            "skipped_missing": len(self.train_src.skipped),
            "skipped_unreadable_per_epoch": self.skipped,
        }
