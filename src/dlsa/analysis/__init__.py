"""Evaluation and reports above the estimator: metrics of a fitted model (whole or
chunked files), the reference-vs-chosen pair, base comparisons, ``diagnose``, figures,
markdown reports and the demo pipeline. Imports the estimator, stage 1 and everything
below; the CLI is the only layer above it."""
