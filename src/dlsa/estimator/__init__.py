"""The scikit-learn estimator :class:`DLSAClassifier`: one fitted cascade, chosen by the
selection of :mod:`dlsa.selection` (the default) or configured, and its persistence."""

from dlsa.cascade.spec import DEFAULT
from dlsa.estimator.classifier import DLSAClassifier
from dlsa.estimator.persistence import FORMAT, FORMAT_VERSION, TENSOR_FILE

__all__ = ["DEFAULT", "DLSAClassifier", "FORMAT", "FORMAT_VERSION", "TENSOR_FILE"]
