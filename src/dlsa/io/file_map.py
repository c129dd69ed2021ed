"""Which image file each row of a feature file came from: ``<features>.files.csv``, written
by ``dlsa extract`` beside the feature file.

One CSV record per feature row, after the header ``row,file``: the row's index and the
image's path. Quoting is the ``csv`` module's, so a path holding a comma, a quote or a
line break stays one record (a plain one-path-per-line list would give such a name two
lines and shift every later row onto the wrong file); read it with :func:`read_file_map`
or any CSV reader. UTF-8; a file name that is not valid UTF-8 keeps its original bytes
(``surrogateescape``), so the map names the file as the file system does.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from dlsa.errors import DLSAInputError

SUFFIX = ".files.csv"
HEADER = ("row", "file")


def file_map_path(features: str | os.PathLike[str]) -> Path:
    """The map beside the feature file ``features``: ``<features>.files.csv``.

    Example:
        >>> file_map_path("out/test.h5").as_posix()
        'out/test.h5.files.csv'
    """
    path = Path(features)
    return path.with_name(path.name + SUFFIX)


def write_file_map(path: str | os.PathLike[str], files: Iterable[str | os.PathLike[str]]) -> None:
    """Write the map: the header, then ``index,path`` for each file in row order.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_file_map(f"{tmp}/m.csv", ["a.png", "line\\nbreak.png", "b.png"])
        ...     read_file_map(f"{tmp}/m.csv")
        ['a.png', 'line\\nbreak.png', 'b.png']
    """
    with open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows((i, os.fspath(f)) for i, f in enumerate(files))


def read_file_map(path: str | os.PathLike[str]) -> list[str]:
    """The image paths of a map written by :func:`write_file_map`, in row order.

    Raises:
        DLSAInputError: naming the file, if it lacks the header or its rows are not
            numbered 0, 1, 2 ... in order.
    """
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        records = list(csv.reader(fh))
    if not records or tuple(records[0]) != HEADER:
        raise DLSAInputError(f"{path}: not a rows-to-files map (no 'row,file' header)")
    files = []
    for i, record in enumerate(records[1:]):
        if len(record) != 2 or record[0] != str(i):
            raise DLSAInputError(f"{path}: record {i + 1} is not '{i},<file>'")
        files.append(record[1])
    return files
