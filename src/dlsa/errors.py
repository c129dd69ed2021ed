"""The errors a user can cause, as exception types.

Library code raises these at the source (feature readers, config validation, model
loading, the estimator's input checks); the ``dlsa`` command turns each into one line
``dlsa <command>: error: <message>`` with exit status 2. Any other exception is a bug and
keeps its traceback. Both types subclass :class:`ValueError`, so the scikit-learn contract
(a bad value raises ``ValueError``) holds.

Example:
    >>> issubclass(ModelFileError, DLSAInputError) and issubclass(DLSAInputError, ValueError)
    True
"""

from __future__ import annotations


class DLSAInputError(ValueError):
    """A bad value, file or hyper-parameter the user can fix; the message names it."""


class ModelFileError(DLSAInputError):
    """A model folder or weights file that is missing, damaged, refused (pickled objects,
    numbers float32 cannot hold), or does not match its metadata or model."""


class TrainingDivergedError(DLSAInputError, FloatingPointError):
    """Training produced a non-finite loss before any usable epoch; the message says
    which settings (or feature scale) to change."""
