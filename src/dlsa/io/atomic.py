"""Atomic writes: files and folders are built beside their destination and renamed into
place, so that a failure never leaves a half-written result.

This module holds the mechanics. Whether an output may be written at all, or replace
what is there, is decided in one place, :mod:`dlsa.io.outputs`, which every command and
the library's saves call; :func:`write_atomic` and :func:`atomic_dir` replace without
asking and serve only inside a folder dlsa already owns (a run folder's epochs, a
temporary folder being filled). :func:`rename_noreplace` is the rename that never
replaces, so that a second writer of the same destination fails instead of silently
replacing the first.

Temporaries live in the destination's parent folder, named
``.<name>.dlsa-tmp.<host>.<pid>.<random>`` (plus the destination's suffix for a file).
A run killed before it could clean up (``kill -9``, a power cut) leaves its temporary
behind; the next atomic write to the same destination removes every such temporary whose
process no longer runs on this host (temporaries of live processes, or of other hosts on
a shared file system, are left alone).

Temporary files and folders get the usual permissions (``0o666`` / ``0o777`` less the
umask), not the ``0600`` / ``0700`` of :mod:`tempfile`, which would stick after the rename.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
import shutil
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_TAG = "dlsa-tmp"
_AT_FDCWD = -100  # renameat2: paths relative to the working folder
_RENAME_NOREPLACE = 1  # renameat2: fail with EEXIST if the destination exists


def write_atomic(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Create ``path`` by calling ``write(tmp)`` on a temporary path beside it (same
    suffix), then renaming it into place; the temporary file is removed on failure.
    Whatever is at ``path`` is replaced: for a destination the user named, use
    :func:`dlsa.io.outputs.output_file`.

    Parent folders are created, and stale temporaries of ``path`` are removed first
    (:func:`remove_stale_temporaries`).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     out = write_atomic(Path(tmp) / "a" / "x.txt", lambda p: p.write_text("hi"))
        ...     out.read_text(), sorted(q.name for q in out.parent.iterdir())
        ('hi', ['x.txt'])
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dest)
    tmp = dest.with_name(temporary_name(dest.name) + dest.suffix)
    try:
        write(tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def temporary_dir_beside(dest: Path) -> Path:
    """An empty folder next to ``dest`` (parents created) with the usual permissions,
    to be filled and then renamed to ``dest``; stale temporaries of ``dest`` are removed
    first."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dest)
    tmp = dest.with_name(temporary_name(dest.name))
    tmp.mkdir()
    return tmp


@contextmanager
def atomic_dir(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a folder atomically: yields an empty temporary folder beside ``dest``; on a
    normal exit it replaces ``dest`` (an existing ``dest`` is moved aside first and then
    removed), on an exception it is removed and ``dest`` is left as it was. Whatever is
    at ``dest`` is replaced: for a destination the user named, use
    :func:`dlsa.io.outputs.output_folder`.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with atomic_dir(Path(tmp) / "out") as work:
        ...         _ = (work / "a.txt").write_text("hi")
        ...     sorted(p.name for p in Path(tmp).iterdir())
        ['out']
    """
    target = Path(dest)
    tmp = temporary_dir_beside(target)
    try:
        yield tmp
        _replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def temporary_name(name: str) -> str:
    """The name of a new temporary for the destination ``name`` (see the module doc)."""
    return f".{name}.{_TAG}.{_host()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


def remove_stale_temporaries(dest: Path) -> list[Path]:
    """Remove the temporaries of ``dest`` left by dead processes of this host.

    Returns:
        The paths removed.
    """
    if not dest.parent.is_dir():
        return []
    pattern = re.compile(
        rf"^\.{re.escape(dest.name)}\.{_TAG}\.{re.escape(_host())}\.(\d+)\.[0-9a-f]{{8}}"
    )
    removed = []
    for path in dest.parent.iterdir():
        match = pattern.match(path.name)
        if match and not _process_exists(int(match.group(1))):
            _remove(path)
            removed.append(path)
    return removed


def rename_noreplace(src: Path, dest: Path) -> None:
    """Rename ``src`` to ``dest`` unless ``dest`` exists, as one step where the system
    allows it, so that of two writers of one destination exactly one succeeds.

    Linux: ``renameat2(..., RENAME_NOREPLACE)``. Elsewhere, or on a file system without
    it: a file is hard-linked to ``dest`` (which fails if ``dest`` exists) and then
    unlinked; a folder is renamed after checking that ``dest`` does not exist (on POSIX
    ``rename`` itself refuses a non-empty folder or a file there, on Windows anything).

    Raises:
        FileExistsError: if ``dest`` exists (nothing is renamed).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     a, b = Path(tmp) / "a", Path(tmp) / "b"
        ...     _ = a.write_text("a"), b.write_text("b")
        ...     try:
        ...         rename_noreplace(a, b)
        ...     except FileExistsError:
        ...         print("refused", b.read_text())
        refused b
    """
    if _renameat2(src, dest):
        return
    if os.path.isdir(src) and not os.path.islink(src):
        _refuse_existing(dest)
        os.rename(src, dest)
        return
    try:
        os.link(src, dest)
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system
        _refuse_existing(dest)
        os.rename(src, dest)
        return
    os.unlink(src)


def _refuse_existing(dest: Path) -> None:
    if os.path.lexists(dest):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dest))


def _renameat2(src: Path, dest: Path) -> bool:
    """``renameat2(RENAME_NOREPLACE)``: True when renamed, False when the call is not
    available here; raises the :class:`OSError` it failed with otherwise."""
    call = _libc_renameat2()
    if call is None:
        return False
    if call(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dest), _RENAME_NOREPLACE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # kernel or file system
        return False
    raise OSError(code, os.strerror(code), str(dest))  # EEXIST gives a FileExistsError


@functools.cache
def _libc_renameat2() -> Any:
    """libc's ``renameat2`` (glibc >= 2.28), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


def remove_path(path: Path) -> None:
    """Remove a file, link or folder tree (nothing if absent)."""
    _remove(path)


def _replace(src: Path, dest: Path) -> None:
    """Rename ``src`` to ``dest``; an existing ``dest`` is renamed aside first and
    removed after, so ``dest`` is never half-written."""
    if not dest.exists():
        src.rename(dest)
        return
    aside = dest.with_name(temporary_name(dest.name))
    dest.rename(aside)
    src.rename(dest)
    _remove(aside)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _host() -> str:
    """This machine's name, reduced to characters safe in a file name."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"


def _process_exists(pid: int) -> bool:
    """Whether process ``pid`` runs (or cannot be checked: then it is kept)."""
    if os.name != "posix":
        return True  # os.kill(pid, 0) would terminate it on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
