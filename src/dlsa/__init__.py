"""dlsa: Dynamic Label Space Adjustment for long-tailed recognition (ECCV 2022).

Public API: :class:`DLSAClassifier` (the cascade, a scikit-learn estimator), the torch
building blocks :class:`MAF`, :class:`GaussianMixtureLatent`, :class:`FlowFilter` and the
losses in :mod:`dlsa.stage2.losses`, the base methods in :mod:`dlsa.stage2.bases`, and
the configs and presets in :mod:`dlsa.config`. The layers and their import rule:
docs/architecture.md.
"""

from dlsa._version import __version__
from dlsa.config import DLSAConfig, FilterConfig, FlowConfig, HeadConfig, MixtureConfig
from dlsa.estimator import DLSAClassifier
from dlsa.stage2.filter import FlowFilter
from dlsa.stage2.flows import MAF
from dlsa.stage2.mixture import GaussianMixtureLatent

__all__ = [
    "MAF",
    "DLSAClassifier",
    "DLSAConfig",
    "FilterConfig",
    "FlowConfig",
    "FlowFilter",
    "GaussianMixtureLatent",
    "HeadConfig",
    "MixtureConfig",
    "__version__",
]
