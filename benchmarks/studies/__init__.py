"""One-off studies: the selection rule, the safeguard, preset tuning, ablations."""
