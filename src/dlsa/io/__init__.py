"""File I/O: feature files (HDF5 / NPZ) whole or in chunks, atomic writes and checksums.
Imports only :mod:`dlsa.errors`."""
