"""Atomic writes: files and folders are built beside their destination and renamed into
place, so that a failure never leaves a half-written result.

Temporary files and folders get the usual permissions (``0o666`` / ``0o777`` less the
umask), not the ``0600`` / ``0700`` of :mod:`tempfile`, which would stick after the rename.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Create ``path`` by calling ``write(tmp)`` on a temporary path beside it (same
    suffix), then renaming it into place; the temporary file is removed on failure.

    Parent folders are created.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     out = write_atomic(Path(tmp) / "a" / "x.txt", lambda p: p.write_text("hi"))
        ...     out.read_text(), sorted(q.name for q in out.parent.iterdir())
        ('hi', ['x.txt'])
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}{dest.suffix}")
    try:
        write(tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def temporary_dir_beside(dest: Path) -> Path:
    """An empty folder next to ``dest`` (parents created) with the usual permissions,
    to be filled and then renamed to ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    return tmp
