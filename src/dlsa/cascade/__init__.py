"""The DLSA cascade of one configuration: its resolved configuration
(:class:`CascadeSpec`), the fitted :class:`Cascade` (levels, regular classifier,
fallback; routing and scoring), its structure built untrained (:mod:`.blueprint`, for
fitting and loading), fitting (:func:`fit_cascade`: the safeguard, then
:mod:`.levels` trains the parts) and the deployment prior. The estimator and the
selection above use these."""

from dlsa.cascade.fit import fit_cascade
from dlsa.cascade.model import Cascade
from dlsa.cascade.spec import CascadeSpec, resolve, selection_of
from dlsa.engine.rows import SCORE_CHUNK

__all__ = ["SCORE_CHUNK", "Cascade", "CascadeSpec", "fit_cascade", "resolve", "selection_of"]
