"""The DLSA cascade as an estimator: :class:`DLSAClassifier` and the modules of its jobs
(fitting, the cluster-aided classifier, inference, the safeguard, persistence)."""

from dlsa.cascade.estimator import DEFAULT, DLSAClassifier
from dlsa.cascade.inference import SCORE_CHUNK
from dlsa.cascade.persistence import FORMAT, FORMAT_VERSION, TENSOR_FILE

__all__ = ["DEFAULT", "DLSAClassifier", "FORMAT", "FORMAT_VERSION", "SCORE_CHUNK", "TENSOR_FILE"]
