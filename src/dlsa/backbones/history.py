"""The record of a stage-1 run: one :class:`EpochRecord` per epoch and the epoch kept
(the best by balanced accuracy on the validation set, or the last without one)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dlsa.engine.progress import Phase, fmt_seconds

__all__ = ["EpochRecord", "Stage1History", "epoch_line", "fmt_score", "update_history"]


@dataclass(frozen=True)
class EpochRecord:
    """What happened in one epoch (1-based ``epoch``); accuracies are fractions."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_accuracy: float | None
    val_balanced_accuracy: float | None
    lr: float
    seconds: float


@dataclass(frozen=True)
class Stage1History:
    """The history of a stage-1 (backbone) run: per-epoch records and the epoch whose
    weights were kept (not :class:`dlsa.engine.training.TrainHistory`, the losses of
    one stage-2 training loop).

    Attributes:
        epochs: one :class:`EpochRecord` per epoch.
        best_epoch: the epoch kept (1-based).
        selection: ``"val_balanced_accuracy"`` or ``"last_epoch"`` (no validation set).
    """

    epochs: tuple[EpochRecord, ...]
    best_epoch: int
    selection: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form."""
        return {
            "epochs": [asdict(r) for r in self.epochs],
            "best_epoch": self.best_epoch,
            "selection": self.selection,
        }


def update_history(history: Stage1History, record: EpochRecord) -> Stage1History:
    """Append ``record``; it becomes the best epoch if its score beats the best so far."""
    epochs = (*history.epochs, record)
    best = history.best_epoch
    if history.selection == "last_epoch" or best == 0:
        return Stage1History(epochs, record.epoch, history.selection)
    score, best_score = (
        record.val_balanced_accuracy,
        history.epochs[best - 1].val_balanced_accuracy,
    )
    assert score is not None and best_score is not None
    return Stage1History(epochs, record.epoch if score > best_score else best, history.selection)


def fmt_score(value: float | None) -> str:
    """A score to 3 decimals, or n/a."""
    return "n/a" if value is None else f"{value:.3f}"


def epoch_line(phase: Phase, record: EpochRecord, last: bool) -> None:
    """Report a stage-1 epoch as a progress line of ``phase`` (epoch k/n, the loss, the
    validation accuracies if any, the epoch's seconds); rate-limited, except the
    ``last`` epoch's line."""
    detail = f"loss {record.train_loss:.4g}, train accuracy {record.train_accuracy:.3f}"
    if record.val_balanced_accuracy is not None:
        detail += f", val balanced accuracy {record.val_balanced_accuracy:.3f}"
    if record.val_accuracy is not None:
        detail += f", val accuracy {record.val_accuracy:.3f}"
    detail += f", epoch {fmt_seconds(record.seconds)}"
    if last:
        phase.end(detail, done=record.epoch)
    else:
        phase.update(record.epoch, detail)
