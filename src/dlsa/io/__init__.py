"""File I/O: feature files (HDF5 / NPZ) whole or in chunks, atomic writes, checksums,
the one place that decides whether an output may be written or replaced
(:mod:`dlsa.io.outputs`), weights files read without running code
(:mod:`dlsa.io.weights`) and the rows-to-files map of ``dlsa extract``
(:mod:`dlsa.io.file_map`). Imports only :mod:`dlsa.errors` and :mod:`dlsa._version`."""
