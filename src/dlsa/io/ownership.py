"""Whether dlsa wrote a file or folder: what :mod:`dlsa.io.outputs` asks before it
replaces anything.

A folder is dlsa's when it holds dlsa's marker, :data:`MARKER` (a JSON list of what dlsa
wrote there, written last, just before the folder is renamed into place), and nothing
else: every entry is listed in it, lies in a folder it claims whole (``dlsa train``'s
``state/``), or is itself a dlsa folder or a file of a kind dlsa writes (a figures
folder, predictions written into a run folder). Folders written before the marker existed
are recognised by their exact layout (:data:`LEGACY_LAYOUTS`).

A file is dlsa's when its content is of a kind dlsa writes: a feature file (``features``
in HDF5 or .npz), ``dlsa predict``'s .npz or .csv, a per-class CSV, a JSON object
written by dlsa (it names ``dlsa_version``), or the rows-to-files map beside a dlsa
feature file (``.files.csv`` with its ``row,file`` header, or an older ``.files.txt``).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from dlsa._version import __version__
from dlsa.io.file_map import HEADER as MAP_HEADER
from dlsa.io.file_map import SUFFIX as MAP_SUFFIX

MARKER = ".dlsa-output.json"
"""The file dlsa writes in every folder it creates: what it wrote there."""

_ANY = "*"  # a folder of a legacy layout whose content is dlsa's whole
_MODEL = {"model.json": None, "model.safetensors": None}
_BACKBONE = {"best.json": None, "best.safetensors": None}
_FIGURES = ("confusion", "confusion_difference", "cluster_sizes", "cluster_purity",
            "separation", "cascade_tsne", "per_class_accuracy", "reliability")  # fmt: skip
LEGACY_LAYOUTS: tuple[tuple[str | None, dict[str, Any]], ...] = (
    ("model.json", _MODEL),
    ("results.json", {
        "model": _MODEL, "base_model": _MODEL, "results.json": None, "report.md": None,
        "per_class.csv": None, "backbone": _BACKBONE, "train.h5": None, "val.h5": None,
        "test.h5": None,
    }),
    ("comparison.json", {"comparison.json": None, "comparison.md": None}),
    ("best.json", {**_BACKBONE, "state": _ANY}),
    (None, {f"{name}.png": None for name in _FIGURES}),
)  # fmt: skip
"""Folders of dlsa versions without :data:`MARKER`: (the file that must be dlsa's, the
names allowed, nested). Any entry outside the layout makes the folder not dlsa's."""

_MAP_SUFFIXES = (MAP_SUFFIX, ".files.txt")  # dlsa.io.file_map's, and the older list
_PREDICTIONS_NPZ = {"pred.npy", "proba.npy", "stage.npy", "classes.npy"}
_CSV_HEADERS = ("index,pred,confidence,stage", "class,train_count,test_count,")
_LEGACY_JSON_KEYS = (
    {"metrics", "stages", "separation", "model", "features"},  # dlsa evaluate --out
    {"filters", "selection", "verdict", "train", "reference"},  # dlsa diagnose --out
)


def write_marker(folder: Path, command: str | None) -> Path:
    """Write :data:`MARKER` into ``folder``, listing every file now in it."""
    files = sorted(rel for rel, _ in _entries(folder) if rel != MARKER)
    path = folder / MARKER
    path.write_text(marker_text(command, files), encoding="utf-8")
    return path


def marker_text(command: str | None, files: Iterable[str], whole: Iterable[str] = ()) -> str:
    """The content of :data:`MARKER`: dlsa's name and version, the command, the files it
    wrote and the sub-folders ``whole`` it claims with all they will hold."""
    marker = {
        "written_by": "dlsa",
        "dlsa_version": __version__,
        "command": command,
        "files": sorted(files),
        "folders": sorted(whole),
    }
    return json.dumps(marker, indent=1) + "\n"


def written_by_dlsa(path: Path) -> bool:
    """Whether ``path`` (a file or folder) is something dlsa wrote (module docstring);
    a symbolic link never is."""
    if path.is_symlink() or not path.exists():
        return False
    return _is_dlsa_folder(path) if path.is_dir() else _is_dlsa_file(path)


def is_empty_folder(path: Path) -> bool:
    """A real (not linked) folder without entries."""
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def _is_dlsa_folder(folder: Path) -> bool:
    marker = _read_json(folder / MARKER)
    if not (isinstance(marker, dict) and marker.get("written_by") == "dlsa"):
        return any(_legacy(folder, sign, tree) for sign, tree in LEGACY_LAYOUTS)
    listed = {str(f) for f in marker.get("files", [])} | {MARKER}
    whole = tuple(str(f).rstrip("/") + "/" for f in marker.get("folders", []))
    for rel, path in _entries(folder, skip=lambda rel: rel + "/" in whole):
        nested = path.is_dir() and not path.is_symlink()
        if nested or not (rel in listed or rel.startswith(whole)):
            if not written_by_dlsa(path):  # a nested folder is checked on its own
                return False
    return True


def _entries(folder: Path, skip: Any = None) -> Iterator[tuple[str, Path]]:
    """(relative POSIX path, path) of the files and links below ``folder``, and of the
    sub-folders that are dlsa folders of their own (not entered); ``skip(rel)`` names
    folders not entered and not listed."""
    for root, dirs, files in os.walk(folder, followlinks=False):
        base = Path(root)
        for name in list(dirs):
            path = base / name
            rel = path.relative_to(folder).as_posix()
            if (skip is not None and skip(rel)) or path.is_symlink():
                dirs.remove(name)
                if path.is_symlink():
                    yield rel, path
            elif (path / MARKER).is_file():
                dirs.remove(name)
                yield rel, path
        for name in files:
            path = base / name
            yield path.relative_to(folder).as_posix(), path


def _legacy(folder: Path, sign: str | None, tree: dict[str, Any]) -> bool:
    """Whether ``folder`` has the layout ``tree`` (and dlsa's ``sign`` file)."""
    if sign is not None and not _is_dlsa_json(folder / sign, legacy=True):
        return False
    return _fits(folder, tree) and any(folder.iterdir())


def _fits(folder: Path, tree: dict[str, Any]) -> bool:
    for path in folder.iterdir():
        want = tree.get(path.name, False)
        if want is _ANY:
            continue
        if path.is_symlink() or want is False or (want is None) == path.is_dir():
            return False
        if isinstance(want, dict) and not _fits(path, want):
            return False
    return True


def _is_dlsa_file(path: Path) -> bool:
    name = path.name.lower()
    for suffix in _MAP_SUFFIXES:  # the rows-to-images map beside a feature file
        if name.endswith(suffix):
            if suffix == MAP_SUFFIX and _first_line(path) != ",".join(MAP_HEADER):
                return False
            return _is_dlsa_file(path.with_name(path.name[: -len(suffix)]))
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        return _is_feature_h5(path)
    if suffix == ".npz":
        names = _zip_names(path)
        return "features.npy" in names or names == _PREDICTIONS_NPZ
    if suffix == ".csv":
        return _first_line(path).startswith(_CSV_HEADERS)
    if suffix == ".json":
        return _is_dlsa_json(path, legacy=True)
    return False


def _is_dlsa_json(path: Path, *, legacy: bool) -> bool:
    """A JSON object dlsa wrote: it names ``dlsa_version`` or is a dlsa model's
    ``model.json`` / a backbone's ``best.json``; with ``legacy``, also the payloads of
    ``evaluate`` / ``diagnose`` before they named the version."""
    data = _read_json(path)
    if not isinstance(data, dict):
        return False
    if "dlsa_version" in data or data.get("format") == "dlsa-model":
        return True
    if path.name == "best.json" and {"architecture", "config"} <= set(data):
        return True
    return legacy and any(keys <= set(data) for keys in _LEGACY_JSON_KEYS)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _zip_names(path: Path) -> set[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            return set(zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return set()


def _first_line(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return ""
    lines = head.decode("utf-8", errors="replace").lstrip("\ufeff").splitlines()
    return lines[0] if lines else ""


def _is_feature_h5(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as fp:
            return isinstance(fp.get("features"), h5py.Dataset)
    except (OSError, ValueError):
        return False
