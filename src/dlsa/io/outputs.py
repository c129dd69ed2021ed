"""The one place that decides whether dlsa may write an output, or replace one. Every
command's files and folders, and the library's own saves (a model, a feature file,
predictions), go through here.

* **Nothing is replaced that dlsa did not write.** An existing output is replaced only
  with ``overwrite`` and only if it is dlsa's (:func:`dlsa.io.ownership.written_by_dlsa`:
  a folder holding dlsa's marker and nothing else, a folder of an older dlsa's layout, a
  file of a kind dlsa writes). Anything else is refused, even with ``overwrite``, and
  left as it was; so is a folder where a file is asked for, and the other way round. An
  empty folder counts as absent.
* **Atomic.** An output is built under a temporary name beside its destination
  (:mod:`dlsa.io.atomic`) and moved into place by one rename at the end.
* **A second writer fails.** Without ``overwrite`` the final rename never replaces
  (:func:`dlsa.io.atomic.rename_noreplace`): if the destination appeared while the
  command ran (a second ``dlsa`` writing the same ``--out``), the temporary is removed
  and :class:`OutputExistsError` says so. With ``overwrite`` the old output is renamed
  aside, checked again, and removed only once the new one is in place.

Errors are :class:`OutputRefusedError` (a :class:`~dlsa.errors.DLSAInputError` and a
:class:`FileExistsError`), which the ``dlsa`` command reports as one line, exit status 2.
``flag`` (``"--out"``) names the output in messages; without it they speak of the path
and of ``overwrite=True``.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dlsa.errors import DLSAInputError
from dlsa.io.atomic import (
    remove_path,
    remove_stale_temporaries,
    rename_noreplace,
    temporary_dir_beside,
    temporary_name,
)
from dlsa.io.ownership import (
    MARKER,
    is_empty_folder,
    marker_text,
    write_marker,
    written_by_dlsa,
)


class OutputRefusedError(DLSAInputError, FileExistsError):
    """An output dlsa will not write: it exists and dlsa did not write it, or it is a
    folder where a file is asked for."""


class OutputExistsError(OutputRefusedError):
    """An output that exists (dlsa's own) without ``overwrite``, or that a second writer
    created while this one ran."""


def check_folder(
    dest: str | os.PathLike[str], *, overwrite: bool, flag: str | None = None
) -> Path:
    """Refuse ``dest`` as an output folder unless it is absent, an empty folder, or (with
    ``overwrite``) a folder dlsa wrote. Changes nothing; call it before long work.

    Raises:
        OutputRefusedError: naming ``dest`` (:class:`OutputExistsError` for dlsa's own
            output without ``overwrite``).
    """
    dest = Path(dest)
    if not os.path.lexists(dest) or is_empty_folder(dest):
        return dest
    if not written_by_dlsa(dest) or not dest.is_dir():
        raise OutputRefusedError(_not_ours(dest, flag))
    if not overwrite:
        raise OutputExistsError(f"{_named(dest, flag)} exists; {_hint(flag)} to replace it")
    return dest


def check_file(dest: str | os.PathLike[str], *, overwrite: bool, flag: str | None = None) -> Path:
    """Refuse ``dest`` as an output file unless it is absent or (with ``overwrite``) a
    file of a kind dlsa writes. Changes nothing; call it before long work.

    Raises:
        OutputRefusedError: naming ``dest``.
    """
    dest = Path(dest)
    if not os.path.lexists(dest):
        return dest
    if dest.is_dir():
        raise OutputRefusedError(f"{_named(dest, flag)} is a folder; give a file name")
    if not written_by_dlsa(dest):
        raise OutputRefusedError(_not_ours(dest, flag, "file"))
    if not overwrite:
        raise OutputExistsError(f"{_named(dest, flag)} exists; {_hint(flag)} to replace it")
    return dest


@contextmanager
def output_folder(
    dest: str | os.PathLike[str],
    *,
    overwrite: bool,
    flag: str | None = None,
    command: str | None = None,
) -> Iterator[Path]:
    """Build the output folder ``dest``: checks it (:func:`check_folder`), yields an
    empty temporary folder beside it to fill; on a normal exit writes dlsa's marker
    (naming ``command``) into it and moves it into place; on an exception removes it.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with output_folder(Path(tmp) / "out", overwrite=False) as work:
        ...         _ = (work / "a.txt").write_text("hi", encoding="utf-8")
        ...     sorted(p.name for p in (Path(tmp) / "out").iterdir())
        ['.dlsa-output.json', 'a.txt']
    """
    target = check_folder(dest, overwrite=overwrite, flag=flag)
    tmp = temporary_dir_beside(target)
    try:
        yield tmp
        write_marker(tmp, command)
        _publish(tmp, target, overwrite=overwrite, flag=flag)
    except BaseException:
        remove_path(tmp)
        raise


def output_file(
    dest: str | os.PathLike[str],
    write: Callable[[Path], object],
    *,
    overwrite: bool,
    flag: str | None = None,
) -> Path:
    """Write the output file ``dest`` by calling ``write(tmp)`` on a temporary path beside
    it (same suffix), after :func:`check_file`, then moving it into place; the temporary
    is removed on failure. Parent folders are created.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     out = output_file(Path(tmp) / "x.csv", lambda p: p.write_text("a,b"),
        ...                       overwrite=False)
        ...     try:
        ...         output_file(out, lambda p: p.write_text("c,d"), overwrite=True)
        ...     except OutputRefusedError as err:
        ...         print("refused:", "not a file written by dlsa" in str(err), out.read_text())
        refused: True a,b
    """
    target = check_file(dest, overwrite=overwrite, flag=flag)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    tmp = target.with_name(temporary_name(target.name) + target.suffix)
    try:
        write(tmp)
        if overwrite and os.path.lexists(target):
            check_file(target, overwrite=True, flag=flag)  # still dlsa's, just before
            os.replace(tmp, target)
        else:
            _rename_or_refuse(tmp, target, flag)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def claim_folder(
    dest: str | os.PathLike[str],
    *,
    overwrite: bool,
    command: str,
    whole: Iterable[str],
    flag: str | None = None,
) -> Path:
    """Take ``dest`` as a folder written in place over time (``dlsa train``'s run
    folder), whose entries ``whole`` are dlsa's with all they will hold.

    After :func:`check_folder`, ``dest`` is created if needed and dlsa's marker created
    in it with an exclusive create, the step that makes a second writer fail; with
    ``overwrite``, the old run's entries are removed first.

    Raises:
        OutputRefusedError: as :func:`check_folder`; :class:`OutputExistsError` when
            another writer claimed ``dest`` first.
    """
    target = check_folder(dest, overwrite=overwrite, flag=flag)
    target.mkdir(parents=True, exist_ok=True)
    names = list(whole)
    if overwrite:
        for name in [*names, MARKER]:
            remove_path(target / name)
    try:
        with open(target / MARKER, "x", encoding="utf-8") as fh:
            fh.write(marker_text(command, names, names))
    except FileExistsError as err:
        raise OutputExistsError(_raced(target, flag)) from err
    return target


def release_folder(dest: str | os.PathLike[str]) -> None:
    """Undo :func:`claim_folder` for a run that failed before it wrote anything: remove
    dlsa's marker (an empty folder left behind counts as absent)."""
    (Path(dest) / MARKER).unlink(missing_ok=True)


def _publish(tmp: Path, dest: Path, *, overwrite: bool, flag: str | None) -> None:
    """Move the folder ``tmp`` to ``dest`` (see the module docstring)."""
    old = _move_aside(dest, flag) if overwrite else None
    if old is None and is_empty_folder(dest):
        try:
            os.rmdir(dest)  # an empty folder counts as absent
        except FileNotFoundError:
            pass
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            raise OutputExistsError(_raced(dest, flag)) from err  # filled meanwhile
    try:
        _rename_or_refuse(tmp, dest, flag)
    finally:
        if old is not None:
            remove_path(old)


def _move_aside(dest: Path, flag: str | None) -> Path | None:
    """Rename the old output ``dest`` to a temporary name and check, now that no one
    else can change it by name, that it is still dlsa's; None when there is none."""
    if not os.path.lexists(dest) or is_empty_folder(dest):
        return None
    aside = dest.with_name(temporary_name(dest.name))
    try:
        os.rename(dest, aside)
    except FileNotFoundError:
        return None
    if not written_by_dlsa(aside) or not aside.is_dir():  # changed since the check
        try:
            rename_noreplace(aside, dest)
        except OSError as err:  # and dest taken meanwhile: keep it under a plain name
            kept = dest.with_name(f"{dest.name}.kept-{os.getpid()}")
            rename_noreplace(aside, kept)
            raise OutputRefusedError(f"{_not_ours(dest, flag)}; it is now at {kept}") from err
        raise OutputRefusedError(_not_ours(dest, flag))
    return aside


def _rename_or_refuse(tmp: Path, dest: Path, flag: str | None) -> None:
    try:
        rename_noreplace(tmp, dest)
    except FileExistsError as err:
        raise OutputExistsError(_raced(dest, flag)) from err


def _named(path: Path, flag: str | None) -> str:
    return f"{flag} {path}" if flag else str(path)


def _hint(flag: str | None) -> str:
    return "pass --overwrite" if flag else "pass overwrite=True"


def _not_ours(path: Path, flag: str | None, what: str = "folder") -> str:
    where, even = (f"another {flag}", "--overwrite") if flag else ("another path", "overwrite")
    return (
        f"{_named(path, flag)} exists and is not a {what} written by dlsa; not replacing "
        f"it, even with {even} (choose {where} or remove it yourself)"
    )


def _raced(path: Path, flag: str | None) -> str:
    return (
        f"{_named(path, flag)} exists: another process wrote it while this command ran; "
        f"nothing replaced ({_hint(flag)} to replace it)"
    )
