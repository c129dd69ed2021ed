"""Model selection of the default configuration on out-of-fold predictions of the
training data: the rule (:mod:`~dlsa.selection.rule`, on the paired statistics of
:mod:`~dlsa.selection.paired`) and the search over base methods
and DLSA variants (:mod:`~dlsa.selection.search`)."""

from dlsa.selection.candidates import c_variants, tau_variants
from dlsa.selection.folds import fold_candidates, out_of_fold
from dlsa.selection.paired import balanced_accuracy, class_hits, paired_gain, rarer_half
from dlsa.selection.rule import Candidate, choose, describe, jsonable
from dlsa.selection.search import (
    reference_params,
    select,
    select_base,
    select_dlsa,
    separation,
)

__all__ = [
    "Candidate",
    "balanced_accuracy",
    "choose",
    "class_hits",
    "describe",
    "fold_candidates",
    "jsonable",
    "out_of_fold",
    "paired_gain",
    "rarer_half",
    "reference_params",
    "select",
    "select_base",
    "select_dlsa",
    "separation",
    "tau_variants",
    "c_variants",
]
