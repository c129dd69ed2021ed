"""Benchmarks, protocols and studies of dlsa (not part of the installed package).

Run each script as a module from the repository root, e.g.
``python -m benchmarks.protocol.panel --help``; ``benchmarks/README.md`` lists them all.
"""
