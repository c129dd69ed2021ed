"""On which evidence the selection of ``dlsa fit`` / ``diagnose`` / ``compare`` decides.

Out-of-fold predictions of training features that the backbone trained on are
overconfident (memorised images), so the selection's prior guard applies to them
(:func:`dlsa.selection.search.guard`). Unless ``--selection.train-features`` (or the
``--config`` file) says otherwise, ``selection.train_features`` follows the provenance
the ``--train`` file records (``backbone_trained_on``, written by ``dlsa extract``):
"seen" and "mixed" give "seen", "unseen" gives "unseen", anything else "unknown". One
line on stderr (not with ``-q``) says which evidence the selection uses and why.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from dlsa.analysis.selection_report import evidence_line
from dlsa.config import DLSAConfig
from dlsa.io.features import FeatureSet

_FLAG_DEST = "cfg:selection.train_features"
_FROM_PROVENANCE = {"seen": "seen", "mixed": "seen", "unseen": "unseen"}


def train_features_from(provenance: str) -> str:
    """``SelectionConfig.train_features`` for a file's ``backbone_trained_on``.

    Example:
        >>> [train_features_from(p) for p in ("seen", "mixed", "unseen", "unknown")]
        ['seen', 'seen', 'unseen', 'unknown']
    """
    return _FROM_PROVENANCE.get(provenance, "unknown")


def with_provenance(config: DLSAConfig, args: argparse.Namespace, train: FeatureSet) -> DLSAConfig:
    """``config`` whose ``selection.train_features`` follows ``--train``'s provenance
    unless the user set it (the flag, or a value other than "unknown" from ``--config``);
    prints the evidence line on stderr unless ``-q``. Unchanged without a selection."""
    sel = config.selection
    if sel is None:
        return config
    if _FLAG_DEST in vars(args):
        because = "as --selection.train-features says"
    elif sel.train_features != "unknown":
        because = "as --config says"
    else:
        value = train_features_from(train.provenance)
        sel = dataclasses.replace(sel, train_features=value)  # type: ignore[arg-type]
        config = dataclasses.replace(config, selection=sel)
        because = (
            f"--train records backbone_trained_on={train.provenance}"
            if train.provenance != "unknown"
            else "--train does not record it"
        )
    source = "validation" if getattr(args, "val", None) else "out-of-fold"
    if not args.quiet:
        print(evidence_line(source, sel.train_features, because), file=sys.stderr)
    return config
