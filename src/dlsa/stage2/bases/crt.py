"""Classifier re-training (``crt``).

References:
    Kang et al., "Decoupling Representation and Classifier for Long-Tailed Recognition",
    ICLR 2020, Sec. 4 ("cRT"). https://arxiv.org/abs/1910.09217
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dlsa.stage2.bases.cbs import ClassBalancedSampling


@dataclass(frozen=True)
class ClassifierRetraining(ClassBalancedSampling):
    """cRT: keep the representation fixed, re-initialise the linear classifier at random
    and train it with class-balanced sampling.

    Kang et al. first train backbone and classifier jointly with instance-balanced
    sampling, then throw the classifier away: its weights are re-initialised at random
    before the class-balanced re-training, so nothing of the joint classifier survives,
    only the features. Here the features are given (stage 1 is done), so cRT on frozen
    features *is* :class:`~dlsa.stage2.bases.cbs.ClassBalancedSampling` - a fresh linear head
    trained with cross-entropy on class-balanced draws - and ``crt`` gives exactly the
    predictions of ``cbs`` for the same seed. The name is kept so that tables can use
    the paper's. (A head warm-started from a CE-trained one would be a different
    method, which Kang et al. do not use.)

    The number of re-training epochs is ``HeadConfig.epochs`` (Kang et al. use 10 on
    ImageNet-LT; epochs are not comparable across data sizes).
    """

    name: ClassVar[str] = "crt"
