"""Softmax cross-entropy (``ce``): the plain base method."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dlsa.stage2.bases._base import BaseMethod


@dataclass(frozen=True)
class CrossEntropy(BaseMethod):
    """Linear classifier trained with softmax cross-entropy on uniformly drawn batches."""

    name: ClassVar[str] = "ce"
    plain_head: ClassVar[bool] = True
    balanced: ClassVar[bool] = False  # cross-entropy on uniform batches: the training prior
