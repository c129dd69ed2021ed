"""Stage 2's parts: the MAF flow, the Gaussian-mixture latent, the losses, the flow filter
and its training, the stage classifiers and the base methods (:mod:`dlsa.stage2.bases`).
Imports :mod:`dlsa.engine`, :mod:`dlsa.config` and :mod:`dlsa.errors` only."""
