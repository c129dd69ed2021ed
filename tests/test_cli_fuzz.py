"""Fuzzing the ``dlsa`` commands with bad inputs (issue 30).

Hypothesis draws one bad thing at a time into an otherwise valid command line of
``fit``, ``diagnose``, ``compare``, ``evaluate``, ``predict`` or ``figures``: a damaged,
mismatched or unreadable feature file in any of the command's file flags, a number
outside its domain for a config flag or a command flag, a word no enum knows, a bad YAML
``--config``, a bad ``--test-prior`` file. Every one must end as the command's one-line
error (exit status 2, one line on stderr starting with ``dlsa <command>: error:`` and
naming what is at fault, no traceback) before any training or scoring starts (the fits
and the scoring functions are replaced by a tripwire), and nothing may be written,
changed or deleted (the test's folder and the shared input files are compared before and
after).

Deterministic: ``derandomize=True`` and no example database; about 10 s. Not covered
here (other parts of issue 30): ``extract`` (weights, backbones), damaged model folders,
``--scheduler`` clusters, ``--overwrite`` and bad output paths.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import math
import os
import tempfile
import typing
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dlsa.analysis.figures  # noqa: F401 - bound to the real evaluate_file before any tripwire
from dlsa.cli import config_fields, main
from dlsa.config import HeadConfig
from dlsa.config.domains import DOMAINS, Domain
from dlsa.estimator import DLSAClassifier
from dlsa.io.features import save_features

COUNTS = (30, 15, 8, 5)
"""Training samples per class of the good training file (D = 3)."""
FAST = ["--config", "small", "--base", "balsoftmax", "--flow-filter.mixture.n-components", "4"]


class Started(Exception):
    """Training or scoring began (a tripwire: the error had to come before)."""


TRAINING = ("dlsa.estimator.final_fit.fit_cascade", "dlsa.estimator.classifier.select")
"""Where every fit of the commands starts training (after its checks)."""
SCORING = (
    "dlsa.analysis.streaming.evaluate_file",
    "dlsa.analysis.streaming.predict_file",
    "dlsa.analysis.figures.write_figures_file",
)
"""Where evaluate, predict and figures start scoring a feature file in chunks."""
ALLOWED: set[str] = set()
"""Entry points that run for real instead of tripping (see :func:`allowing`)."""


@contextlib.contextmanager
def allowing(*targets: str) -> typing.Iterator[None]:
    """Let the entry points ``targets`` run for real inside the block."""
    ALLOWED.update(targets)
    try:
        yield
    finally:
        ALLOWED.difference_update(targets)


@pytest.fixture(scope="module", autouse=True)
def tripwires():
    """Every training and scoring entry point of the commands raises :class:`Started`
    unless :func:`allowing` it."""

    def wire(target: str, original: typing.Callable) -> typing.Callable:
        def tripwire(*args: object, **kwargs: object) -> object:
            if target in ALLOWED:
                return original(*args, **kwargs)
            raise Started(target)

        return tripwire

    with pytest.MonkeyPatch.context() as mp:
        for target in TRAINING + SCORING:
            module, _, name = target.rpartition(".")
            mp.setattr(target, wire(target, getattr(importlib.import_module(module), name)))
        yield


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Good inputs: train.h5, val.h5, test.npz, and a model and a base model fitted on
    the training file."""
    root = tmp_path_factory.mktemp("fuzz-world")
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(len(COUNTS)), COUNTS)
    X = rng.normal(size=(len(y), 3)) + y[:, None]
    save_features(root / "train.h5", X, y)
    save_features(root / "val.h5", X[::3], y[::3])
    save_features(root / "test.npz", X[1::3], y[1::3])
    with allowing(*TRAINING):
        for name in ("model", "base_model"):
            clf = DLSAClassifier(
                depth=0, base="balsoftmax", selection=None, head=HeadConfig(epochs=1)
            )
            clf.fit(X, y).save(root / name)
    return root


def good_argv(command: str, w: Path, t: Path) -> list[str]:
    """A valid command line of ``command`` on the good inputs of ``w``, writing into ``t``."""
    train, val, test = ["--train", str(w / "train.h5")], str(w / "val.h5"), str(w / "test.npz")
    model = ["--model", str(w / "model")]
    return {
        "fit": ["fit", *train, "--test", test, "--val", val, "--out", str(t / "o"), *FAST],
        "diagnose": ["diagnose", *train, "--val", val, "--out", str(t / "d.json"), *FAST],
        "compare": ["compare", *train, "--test", test, "--bases", "balsoftmax,ce",
                    "--seeds", "0,1", "--out", str(t / "c"), *FAST],
        "evaluate": ["evaluate", *model, "--features", test, "--out", str(t / "metrics.json")],
        "predict": ["predict", *model, "--features", test, "--out", str(t / "pred.csv")],
        "figures": ["figures", *model, "--base-model", str(w / "base_model"), "--features", test,
                    "--out", str(t / "f")],
    }[command]  # fmt: skip


FILE_FLAGS = {
    "fit": ("--train", "--val", "--test"),
    "diagnose": ("--train", "--val"),
    "compare": ("--train", "--test"),
    "evaluate": ("--features",),
    "predict": ("--features",),
    "figures": ("--features",),
}
CONFIG_COMMANDS = ("fit", "diagnose", "compare")
PRIOR_COMMANDS = ("fit", "evaluate", "predict")


# -- bad feature files --------------------------------------------------------------------


def _good_arrays(n: int = 12, d: int = 3) -> dict[str, np.ndarray]:
    y = np.arange(n) % len(COUNTS)
    return {"features": np.random.default_rng(n).normal(size=(n, d)), "labels": y}


def _write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    if path.suffix == ".npz":
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
        return
    with h5py.File(path, "w") as fp:
        for key, value in arrays.items():
            text = value.dtype.kind in "US"
            fp.create_dataset(key, data=value.astype(object) if text else value,
                              dtype=h5py.string_dtype() if text else None)  # fmt: skip


LABEL_DEFECTS = ("fraction", "nan_labels", "label_kind", "unknown_label", "no_labels")
"""Defects of the labels' values (``predict`` does not read labels)."""


@st.composite
def feature_defect(draw: st.DrawFn, flag: str, command: str) -> tuple[str, object]:
    """A defect of a feature file and its parameter."""
    names = ["missing", "folder", "suffix", "empty", "garbage", "truncated", "wrong_keys",
             "nonfinite", "dtype", "label_count", "shape", "dimension"]  # fmt: skip
    if command != "predict":
        names += [d for d in LABEL_DEFECTS if not (flag == "--train" and d == "unknown_label")]
    if command == "fit" and flag == "--val":
        names.append("one_row_calibrate")
    name = draw(st.sampled_from(names))
    param = {
        "garbage": st.binary(min_size=1, max_size=300),
        "truncated": st.floats(0.0, 0.97),
        "wrong_keys": st.sampled_from(["feats", "Features", "x", "group"]),
        "nonfinite": st.sampled_from([math.nan, math.inf, -math.inf, 1e39]),
        "dtype": st.sampled_from(["text", "complex", "bool"]),
        "label_count": st.sampled_from([-3, -1, 1, 5]),
        "shape": st.sampled_from(["1d", "3d", "no_rows", "no_columns"]),
        "dimension": st.sampled_from([1, 2, 4, 7]),
        "label_kind": st.sampled_from(["text", "bool"]),
    }.get(name, st.none())
    return name, draw(param)


def write_defect(t: Path, suffix: str, name: str, param: object) -> Path:
    """Write a feature file with the defect ``name`` into ``t``; its path."""
    path = t / f"bad{suffix}"
    arrays = _good_arrays()
    X, y = arrays["features"], arrays["labels"]
    if name == "missing":
        return path
    if name == "folder":
        path.mkdir()
    elif name == "suffix":
        path = t / "bad.txt"
        _write(t / "tmp.npz", arrays)
        (t / "tmp.npz").rename(path)
    elif name in ("empty", "garbage"):
        path.write_bytes(b"" if name == "empty" else typing.cast(bytes, param))
    elif name == "truncated":
        _write(path, arrays)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * typing.cast(float, param))])
    elif name == "wrong_keys" and param == "group" and suffix != ".npz":
        with h5py.File(path, "w") as fp:
            fp.create_group("features")
    elif name == "wrong_keys":
        _write(path, {"feats" if param == "group" else str(param): X, "labels": y})
    else:
        _write(path, _defective_arrays(name, param, X, y))
    return path


def _defective_arrays(name: str, param: object, X: np.ndarray, y: np.ndarray) -> dict:
    if name == "nonfinite":
        X = X.copy()
        X[5, 1] = param
    elif name == "dtype":
        X = {"text": np.full(X.shape, "x"), "complex": X + 1j, "bool": X > 0}[str(param)]
    elif name == "label_count":
        y = np.resize(y, len(y) + typing.cast(int, param))
    elif name == "shape":
        shapes = {"1d": X[:, 0], "3d": X[:, :, None], "no_rows": X[:0], "no_columns": X[:, :0]}
        X = shapes[str(param)]
        y = y[:0] if param == "no_rows" else y
    elif name == "dimension":
        X = np.resize(X, (len(X), typing.cast(int, param)))
    elif name == "fraction":
        y = y.astype(float)
        y[2] = 1.5
    elif name == "nan_labels":
        y = y.astype(float)
        y[2] = math.nan
    elif name == "label_kind":
        y = np.array([f"c{v}" for v in y]) if param == "text" else y % 2 == 0
    elif name == "unknown_label":
        y = y.copy()
        y[3] = 99
    elif name in ("no_labels", "one_row_calibrate"):
        return {"features": X} if name == "no_labels" else {"features": X[:1], "labels": y[:1]}
    return {"features": X, "labels": y}


@st.composite
def file_cases(draw: st.DrawFn) -> tuple:
    command = draw(st.sampled_from(sorted(FILE_FLAGS)))
    flag = draw(st.sampled_from(FILE_FLAGS[command]))
    defect = draw(feature_defect(flag, command))
    return ("file", command, flag, draw(st.sampled_from([".h5", ".npz"])), defect)


# -- bad numbers and words ----------------------------------------------------------------


def outside(domain: Domain, integer: bool) -> st.SearchStrategy[str]:
    """Text of numbers outside ``domain``, and text that is no number at all."""
    words = ["nan", "inf", "-inf", "abc", "", "1e", "0x10", "--", *(["1.5"] if integer else [])]
    low, high = domain.low, domain.high
    numbers: list[st.SearchStrategy] = []
    if integer and low > -math.inf:
        numbers.append(st.integers(max_value=int(low) - (0 if domain.open_low else 1)))
    if integer and high < math.inf:
        numbers.append(st.integers(min_value=int(high) + (0 if domain.open_high else 1)))
    if not integer and low > -math.inf:
        numbers.append(st.floats(max_value=low, exclude_max=not domain.open_low))
    if not integer and high < math.inf:
        numbers.append(st.floats(min_value=high, exclude_min=not domain.open_high))
    return st.one_of(st.sampled_from(words), *(n.map(str) for n in numbers))


def _numeric_flags() -> list[tuple[str, Domain, bool]]:
    """(flag, domain, is int) of every config field with a domain."""
    classes = {"": "DLSAConfig", "flow_filter.": "FilterConfig", "head.": "HeadConfig",
               "selection.": "SelectionConfig", "flow_filter.flow.": "FlowConfig",
               "flow_filter.mixture.": "MixtureConfig"}  # fmt: skip
    out = []
    for path, hint, _, _ in config_fields():
        prefix, _, name = path.rpartition(".")
        domain = DOMAINS[classes[prefix + "." if prefix else ""]].get(name)
        if domain is not None:
            out.append(("--" + path.replace("_", "-"), domain, "int" in str(hint)))
    return out


ENUM_FLAGS = ["--base", "--reference", "--backend", "--regular-data", "--stage-prior",
              "--flow-filter.precision", "--head.schedule", "--selection.bases",
              "--selection.multiplicity", "--selection.train-features", "--features-on",
              "--device"]  # fmt: skip
WORDS = st.sampled_from(["nope", "", "BALSOFTMAX", "auto,", "cuda:99", "1", "None", "é"])


@st.composite
def flag_cases(draw: st.DrawFn) -> tuple:
    command = draw(st.sampled_from(CONFIG_COMMANDS))
    kind = draw(st.sampled_from(["number", "enum", "command"]))
    if kind == "number":
        flag, domain, integer = draw(st.sampled_from(_numeric_flags()))
        return ("flag", command, flag, draw(outside(domain, integer)))
    if kind == "enum":
        flag = draw(st.sampled_from(ENUM_FLAGS))
        if flag == "--reference" and command == "compare":
            flag = "--base"
        return ("flag", command, flag, draw(WORDS.filter(lambda w: w not in ("None", "1"))))
    flags = {
        "--threads": st.sampled_from(["0", "-1", "x", "1.5", str(10**20), ""]),
        "--log-level": st.sampled_from(["nope", "", "5", "Level 5"]),
        "--config": st.sampled_from(["nope", "Small", "missing.yaml", "."]),
        "--base-params": st.sampled_from(["{", "[1]", '{"nope": 1}', "null", '"x"']),
    }
    if command == "compare":
        flags["--seeds"] = st.sampled_from(["", "a", "0,0", "-1", "1.5", ","])
        flags["--bases"] = st.sampled_from(["", "nope", "ce,ce", ",", "balsoftmax,nope"])
    flag = draw(st.sampled_from(sorted(flags)))
    return ("flag", command, flag, draw(flags[flag]))


YAML_TEXTS = st.sampled_from([
    "depth: -1\n", "depth: x\n", "depth: 1.5\n", "flow_filter: 3\n", "head:\n  epochs: a\n",
    "flow_filter:\n  lrr: 0.3\n", "nope: 1\n", "1: 2\n", "- depth\n", "just text\n",
    "depth: [1\n", "head:\n  lr: .nan\n", "selection:\n  folds: 1\n", "base: nope\n",
    "flow_filter:\n  mixture:\n    n_components: 0\n", "random_state: -3\n",
])  # fmt: skip


@st.composite
def yaml_cases(draw: st.DrawFn) -> tuple:
    garbage = st.binary(max_size=64).map(lambda b: b"\xff" + b)  # never UTF-8
    text = draw(st.one_of(YAML_TEXTS.map(str.encode), garbage))
    return ("yaml", draw(st.sampled_from(CONFIG_COMMANDS)), "--config", text)


PRIOR_FILES = st.sampled_from([
    ("p.json", '{"0": 1, "1": 1, "2": 1, "3": 1, "9": 1}'), ("p.json", '{"0": 1}'),
    ("p.json", '{"0": -1, "1": 1, "2": 1, "3": 1}'),
    ("p.json", '{"0": NaN, "1": 1, "2": 1, "3": 1}'),
    ("p.json", '[1, 2, 3, 4]'), ("p.json", '{"0": "x", "1": 1, "2": 1, "3": 1}'), ("p.json", "{"),
    ("p.json", '{"0": 0, "1": 0, "2": 0, "3": 0}'), ("p.csv", "class,frequency\n0,1\n1\n"),
    ("p.csv", "0,1\n1,1\n"), ("p.csv", "0,x\n1,1\n2,1\n3,1\n"), ("p.txt", "0,1\n"),
    ("missing.json", None), ("p.json", b"\xff\xfe"), (None, "nope"),
])  # fmt: skip


@st.composite
def prior_cases(draw: st.DrawFn) -> tuple:
    return ("prior", draw(st.sampled_from(PRIOR_COMMANDS)), "--test-prior", draw(PRIOR_FILES))


# -- the test -----------------------------------------------------------------------------


def build(case: tuple, w: Path, t: Path) -> list[str]:
    """The command line of ``case``, with its bad files written into ``t``."""
    kind, command, flag, *rest = case
    argv = good_argv(command, w, t)
    if kind == "file":
        suffix, (name, param) = rest
        value = str(write_defect(t, suffix, name, param))
        argv += ["--calibrate"] if name == "one_row_calibrate" else []
    elif kind == "flag":
        value = rest[0]
    elif kind == "yaml":
        (t / "c.yaml").write_bytes(rest[0])
        value = str(t / "c.yaml")
    else:
        name, content = rest[0]
        if name is None:
            value = content
        else:
            if content is not None:
                data = content if isinstance(content, bytes) else content.encode()
                (t / name).write_bytes(data)
            value = str(t / name)
    if flag in argv:  # replace the good value
        argv[argv.index(flag) + 1] = value
        return argv
    return [*argv, f"{flag}={value}"]


def snapshot(*folders: Path) -> dict[str, tuple[str, str]]:
    """Every file and folder under ``folders``: kind and content hash."""
    out = {}
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            for name in dirnames:
                out[os.path.join(dirpath, name)] = ("dir", "")
            for name in filenames:
                p = os.path.join(dirpath, name)
                with open(p, "rb") as fh:
                    out[p] = ("file", hashlib.sha256(fh.read()).hexdigest())
    return out


@dataclass
class Outcome:
    code: int | None
    err: str


def run_in(t: Path, argv: list[str]) -> Outcome:
    """``dlsa argv`` in process, in the folder ``t``."""
    err, cwd = io.StringIO(), os.getcwd()
    os.chdir(t)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    finally:
        os.chdir(cwd)
    return Outcome(code, err.getvalue())


def named(case: tuple, line: str) -> bool:
    """Whether the error line names what ``case`` made bad."""
    kind, _, flag, *rest = case
    dotted = flag.lstrip("-").replace("-", "_")
    if kind == "file" and flag == "--train":  # a bad --train can show as a mismatch
        return "--train" in line
    return flag in line or dotted in line


def scored(case: tuple) -> bool:
    """Whether ``case`` is a bad feature value that a command on a saved model finds
    only while it scores the file chunk by chunk (it reads no whole file up front, which
    may be larger than memory); nothing is written then either."""
    values = ("nonfinite", "dtype")
    return (
        case[0] == "file"
        and case[1] in ("evaluate", "predict", "figures")
        and case[4][0] in values
    )


CASES = st.one_of(file_cases(), flag_cases(), yaml_cases(), prior_cases())


@settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=CASES)
def test_every_bad_input_is_one_line_before_any_work(world, case):
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        argv = build(case, world, t)
        before = snapshot(t, world)
        with allowing(*(SCORING if scored(case) else ())):
            outcome = run_in(t, argv)  # Started (training or scoring began) fails the test
        lines = outcome.err.splitlines()
        assert outcome.code == 2, (argv, outcome)
        assert len(lines) == 1 and "Traceback" not in outcome.err, (argv, outcome.err)
        assert lines[0].startswith(f"dlsa {case[1]}: error: "), lines
        assert named(case, lines[0]), (case[2], lines[0])
        assert snapshot(t, world) == before, argv


@pytest.mark.parametrize("command", sorted(FILE_FLAGS))
def test_the_good_command_lines_reach_the_work(world, tmp_path, command):
    """The fuzz's baseline: without the bad input, each command gets to its training or
    scoring (so that the error of a fuzz example is the bad input's)."""
    with pytest.raises(Started):
        run_in(tmp_path, good_argv(command, world, tmp_path))
