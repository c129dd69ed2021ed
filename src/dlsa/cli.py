"""The ``dlsa`` command line: fit, evaluate and predict on feature files.

Configuration flags are generated from the dataclasses of :mod:`dlsa.config` (names,
types, defaults and help text have one source). This module seeds the global RNGs once,
sets up logging, does the file IO, and touches the test features only in the final
evaluation. It contains no math.
"""

from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import inspect
import json
import logging
import subprocess
import sys
import time
import traceback
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dlsa import __version__
from dlsa.atomic import atomic_dir, write_atomic
from dlsa.bases import BASES
from dlsa.cascade import DLSAClassifier
from dlsa.config import (
    PRESETS,
    DLSAConfig,
    SelectionConfig,
    dataclass_in,
    from_dict,
    get_preset,
    set_path,
    to_dict,
)
from dlsa.errors import DLSAInputError
from dlsa.evaluation import compare_on_stages, encode_labels, evaluate
from dlsa.features import load_features
from dlsa.report import (
    classes_line,
    levels_table,
    metrics_table,
    safeguard_table,
    selection_table,
    stages_table,
)
from dlsa.selection import describe, reference_params

logger = logging.getLogger("dlsa")

SKIPPED_FIELDS = {"base_params", "verbose"}


class CLIError(Exception):
    """A user error found by the command itself (a flag, an output path), reported as one
    line with exit status 2, like :class:`dlsa.errors.DLSAInputError`."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str) -> typing.NoReturn:
        """Print ``<prog>: error: <message>`` and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ------------------------------------------------------------------ config flags
def field_docs(cls: type[Any]) -> dict[str, str]:
    """The attribute docstrings of a dataclass (the string under each field)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for prev, node in zip(body, body[1:], strict=False):
        if (
            isinstance(prev, ast.AnnAssign)
            and isinstance(prev.target, ast.Name)
            and isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            docs[prev.target.id] = " ".join(node.value.value.split())
    return docs


def config_fields(
    cls: type[Any] = DLSAConfig, prefix: str = ""
) -> Iterator[tuple[str, Any, Any, str]]:
    """Leaf fields of a config as ``(dotted path, type hint, default, help)``."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    default = cls()
    for f in dataclasses.fields(cls):
        if f.name in SKIPPED_FIELDS:
            continue
        hint = hints[f.name]
        sub = dataclass_in(hint)
        if sub is not None:
            yield from config_fields(sub, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", hint, getattr(default, f.name), docs.get(f.name, "")


def _union_members(hint: Any) -> tuple[Any, ...]:
    """The members of ``X | Y`` (``(hint,)`` for anything else, e.g. ``tuple[int, ...]``)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _parser_for(hint: Any) -> Callable[[str], Any]:
    args = _union_members(hint)
    kinds = [a for a in args if a is not type(None)]
    optional = type(None) in args

    def parse(text: str) -> Any:
        if optional and text.lower() in ("none", "null"):
            return None
        kind = kinds[0]
        if typing.get_origin(kind) is typing.Literal:
            return text  # a choice: config.from_dict checks it
        if typing.get_origin(kind) is tuple:
            item = _parser_for(typing.get_args(kind)[0])
            return tuple(item(v.strip()) for v in text.split(",") if v.strip())
        if kind is bool:
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
        try:
            return kind(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from err

    return parse


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--preset/--config`` and one flag per config field."""
    group = parser.add_argument_group("configuration (overrides the preset or YAML file)")
    group.add_argument(
        "--config",
        default="default",
        help=f"a preset ({', '.join(PRESETS)}) or a YAML file of DLSAConfig fields "
        "(default: 'default', the safe configuration that selects the base method and "
        "DLSA on out-of-fold evidence; the paper presets reproduce the paper)",
    )
    group.add_argument(
        "--no-selection",
        action="store_true",
        help="fit the configuration as given, without out-of-fold selection (needs a "
        "concrete --base)",
    )
    group.add_argument("--base-params", default=None, help="base method hyper-parameters as JSON")
    for path, hint, default, doc in config_fields():
        flag = "--" + path.replace("_", "-")
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        group.add_argument(
            flag,
            dest=f"cfg:{path}",
            type=_parser_for(hint),
            default=argparse.SUPPRESS,
            metavar=_metavar(hint),
            help=f"{doc} (default: {shown})".replace("%", "%%"),
        )


def _metavar(hint: Any) -> str:
    kind = next(a for a in _union_members(hint) if a is not type(None))
    if typing.get_origin(kind) is tuple:
        return "LIST"
    if typing.get_origin(kind) is typing.Literal:
        return "{" + ",".join(map(str, typing.get_args(kind))) + "}"
    return getattr(kind, "__name__", "X").upper()


def resolve_config(args: argparse.Namespace) -> DLSAConfig:
    """Preset or YAML file, then the command-line overrides."""
    source = args.config
    if source in PRESETS:
        data = to_dict(get_preset(source))
    else:
        path = Path(source)
        if not path.is_file():
            raise CLIError(
                f"--config {source!r} is neither a preset ({', '.join(PRESETS)}) nor a file"
            )
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise CLIError(f"{path}: invalid YAML ({err})") from err
        try:
            parsed = from_dict(DLSAConfig, _check_mapping(loaded, path), where=str(path))
        except ValueError as err:
            raise CLIError(str(err)) from err
        data = to_dict(parsed)
    for key, value in vars(args).items():
        if key.startswith("cfg:"):
            if key.startswith("cfg:selection.") and data.get("selection") is None:
                data["selection"] = to_dict(SelectionConfig())
            set_path(data, key[4:], value)
    if getattr(args, "no_selection", False):
        data["selection"] = None
    if args.base_params is not None:
        try:
            data["base_params"] = json.loads(args.base_params)
        except json.JSONDecodeError as err:
            raise CLIError(f"--base-params is not valid JSON: {err}") from err
    try:
        return from_dict(DLSAConfig, data)
    except ValueError as err:
        raise CLIError(str(err)) from err


def _check_mapping(loaded: Any, path: Path) -> dict[str, Any]:
    if not isinstance(loaded, dict):
        raise CLIError(f"{path}: expected a mapping of config fields, got {type(loaded).__name__}")
    return loaded


# ---------------------------------------------------------------- run helpers
def seed_everything(seed: int | None) -> None:
    """Seed the global RNGs once, as a safety net for third-party code."""
    if seed is None:
        return
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - global safety net, the library never uses it
    torch.manual_seed(seed)


def git_commit() -> str | None:
    """The commit of the source tree dlsa runs from, if it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def check_out(dest: Path, *, overwrite: bool) -> Path:
    """Refuse an existing, non-empty ``--out`` unless ``--overwrite``; the folder itself is
    then built with :func:`dlsa.atomic.atomic_dir`."""
    if dest.exists() and not overwrite and (not dest.is_dir() or any(dest.iterdir())):
        raise CLIError(f"--out {dest} exists and is not empty; pass --overwrite to replace it")
    return dest


def _load(path: str, *, require_labels: bool, what: str) -> Any:
    try:
        return load_features(path, require_labels=require_labels)
    except DLSAInputError as err:
        raise CLIError(f"{what}: {err}") from err


def _load_train_test(args: argparse.Namespace) -> tuple[Any, Any]:
    """The labelled --train and --test files, checked to have the same feature dimension."""
    train = _load(args.train, require_labels=True, what="--train")
    test = _load(args.test, require_labels=True, what="--test")
    if test.X.shape[1] != train.X.shape[1]:
        raise CLIError(
            f"--test {args.test} has {test.X.shape[1]} features but --train has {train.X.shape[1]}"
        )
    return train, test


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(path: Path, data: Any) -> None:
    """Write JSON (numpy values converted)."""
    path.write_text(json.dumps(data, indent=2, default=_json_default))


# ------------------------------------------------------------------- commands
def cmd_fit(args: argparse.Namespace) -> int:
    """Train base and base + DLSA on --train, evaluate both once on --test."""
    config = resolve_config(args)
    config = dataclasses.replace(config, verbose=not args.quiet)
    train, test = _load_train_test(args)
    seed_everything(config.random_state)
    dest = check_out(Path(args.out), overwrite=args.overwrite)
    with atomic_dir(dest) as tmp:
        results = _fit_and_evaluate(config, train, test, tmp, args.reference)
        results["train"], results["test"] = str(args.train), str(args.test)
        write_json(tmp / "results.json", results)
        text = _fit_report(results)
        (tmp / "report.md").write_text(text + "\n")
    print(text)
    print(f"\nwrote {dest}/ (model/, base_model/, results.json, report.md)")
    return 0


def _fit_and_evaluate(
    config: DLSAConfig, train: Any, test: Any, folder: Path, reference: str | None = None
) -> dict[str, Any]:
    timings: dict[str, float] = {}
    models: dict[str, DLSAClassifier] = {}
    runs = [("base", reference_params(config, reference)), ("dlsa", config.estimator_params())]
    for name, params in runs:
        start = time.perf_counter()
        logger.info("fitting %s (%s, depth %d)", name, params["base"], params["depth"])
        try:
            models[name] = DLSAClassifier(**params).fit(train.X, train.y)
        except (ValueError, FloatingPointError) as err:
            raise CLIError(f"--train {getattr(train, 'path', '')}: {err}") from err
        timings[f"fit_{name}"] = time.perf_counter() - start
    models["dlsa"].save(folder / "model")
    models["base"].save(folder / "base_model")
    target = encode_labels(models["dlsa"], test.y, source="--test")
    evals = {name: evaluate(m, test.X, test.y) for name, m in models.items()}
    return {
        "dlsa_version": __version__,
        "git_commit": git_commit(),
        "seed": config.random_state,
        "config": to_dict(config),
        "timings_s": timings,
        "base": {k: evals["base"][k] for k in ("metrics",)},
        "dlsa": {k: evals["dlsa"][k] for k in ("metrics", "stages", "separation")},
        "stage_comparison": compare_on_stages(evals["dlsa"], evals["base"], target),
        "levels": models["dlsa"].reports_,
        "validation": models["dlsa"].validation_,
        "selection": models["dlsa"].selection_,
        "reference": models["base"].fitted_params_["base"],
        "chosen": describe(models["dlsa"].fitted_params_),
        "n_levels": len(models["dlsa"].filters_),
        "classes": models["dlsa"].classes_.tolist(),
        "class_counts": models["dlsa"].class_counts_.tolist(),
    }


def _fit_report(results: dict[str, Any]) -> str:
    ref, chosen = results["reference"], results["chosen"]
    if chosen == ref:
        chosen += " (chosen)"
    table = metrics_table(
        {ref: results["base"]["metrics"], chosen: results["dlsa"]["metrics"]}, reference=ref
    )
    parts = [
        "## Test metrics (%)",
        table,
        "",
        "## Selection (out-of-fold predictions of the training data)",
        selection_table(results["selection"]),
        "",
        "## Flow filters (train routing, test separation)",
        levels_table(results["levels"], results["dlsa"]["separation"]),
        "",
        "## Stages on the test set",
        stages_table(results["stage_comparison"], results["n_levels"]),
        "",
        "## Safeguard (decided on training data only)",
        safeguard_table(results["validation"], results["n_levels"]),
        "",
        "## Classes (training samples)",
        classes_line(results["classes"], results["class_counts"]),
        "",
        "time: " + ", ".join(f"{k} {v:.1f}s" for k, v in results["timings_s"].items()),
    ]
    return "\n".join(parts)


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Filters once, DLSA's out-of-fold gain over the reference, and a verdict."""
    from dlsa.diagnose import diagnose, diagnose_report

    config = dataclasses.replace(resolve_config(args), verbose=False)
    train = _load(args.train, require_labels=True, what="--train")
    reference = args.reference or (config.base if config.base != "auto" else "balsoftmax")
    seed_everything(config.random_state)
    try:
        result = diagnose(train.X, train.y, config, reference)
    except (ValueError, FloatingPointError) as err:
        raise CLIError(f"--train {args.train}: {err}") from err
    text = diagnose_report(result)
    if args.out:
        payload = result | {"train": str(args.train), "reference": reference}
        write_atomic(Path(args.out), lambda p: write_json(p, payload))
    print(text)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Every base alone and with DLSA over seeds; filters trained once per seed."""
    from dlsa.comparison import compare_bases, comparison_table

    config = dataclasses.replace(resolve_config(args), verbose=False)
    train, test = _load_train_test(args)
    bases = [b.strip() for b in args.bases.split(",") if b.strip()]
    seeds = [int(v) for v in args.seeds.split(",")]
    seed_everything(seeds[0])
    dest = check_out(Path(args.out), overwrite=args.overwrite)
    with atomic_dir(dest) as tmp:
        try:
            result = compare_bases(
                train.X, train.y, test.X, test.y,
                bases=bases, config=config, seeds=seeds, progress=not args.quiet,
            )  # fmt: skip
        except (ValueError, FloatingPointError) as err:
            raise CLIError(f"--train {args.train}: {err}") from err
        record = dict(result) | {"git_commit": git_commit(), "dlsa_version": __version__}
        record |= {"train": str(args.train), "test": str(args.test)}
        write_json(tmp / "comparison.json", record)
        text = comparison_table(result)
        (tmp / "comparison.md").write_text(text + "\n")
    print(text)
    print(f"\nwrote {dest}/ (comparison.md, comparison.json)")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    """Embed image files with a saved stage-1 backbone into a feature file."""
    from dlsa.backbones import extract_to_file, load_checkpoint
    from dlsa.datasets import IMAGE_EXTENSIONS, ImageListDataset, read_split_list

    try:
        model, meta = load_checkpoint(args.backbone)
    except (OSError, ValueError, KeyError) as err:
        raise CLIError(f"--backbone {args.backbone}: {err}") from err
    size = args.size or meta.get("image_size")
    if not size:
        raise CLIError("--size is required: the backbone does not record its image size")
    mode = "L" if model.config()["in_channels"] == 1 else "RGB"
    if args.split_list:
        try:
            paths, labels = read_split_list(args.split_list, args.images)
        except (OSError, ValueError) as err:
            raise CLIError(f"--split-list: {err}") from err
    else:
        folder = Path(args.images)
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not paths:
            raise CLIError(f"--images {folder}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
        labels = None
    dataset = ImageListDataset(
        paths,
        np.zeros(len(paths), dtype=np.int64),
        size=int(size),
        mode=mode,  # type: ignore[arg-type]
    )
    out = Path(args.out)
    extract_to_file(
        model, dataset, labels, out, split="extract", backbone_id=str(args.backbone),
        progress=not args.quiet,
    )  # fmt: skip
    write_atomic(
        out.with_name(out.name + ".files.txt"),
        lambda p: p.write_text("".join(f"{path}\n" for path in paths)),
    )
    print(f"wrote {len(paths)} feature rows to {out} (file order in {out.name}.files.txt)")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    """The paper's figures for a saved model on labelled features."""
    from dlsa.figures import write_figures

    model = _load_model(args.model)
    base = _load_model(args.base_model) if args.base_model else None
    data = _load(args.features, require_labels=True, what="--features")
    dest = check_out(Path(args.out), overwrite=args.overwrite)
    with atomic_dir(dest) as tmp:
        try:
            files = write_figures(model, data.X, data.y, tmp, base=base)
        except ValueError as err:
            raise CLIError(f"--features {args.features}: {err}") from err
    print("\n".join(str(dest / f.name) for f in files))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Fashion-MNIST-LT end to end: backbone, features, base vs base + DLSA."""
    from dlsa.pipeline import DemoSettings, demo_record, run_demo

    config = resolve_config(args)
    settings = DemoSettings(
        data_root=args.data_root,
        imbalance=args.imbalance,
        n_max=args.n_max,
        seed=args.seed,
        backbone_epochs=args.backbone_epochs,
        backbone_sampler=args.backbone_sampler,
        device=config.device,
    )
    seed_everything(settings.seed)
    dest = Path(args.out)
    try:
        with atomic_dir(dest) as tmp:
            result = run_demo(settings, config, tmp, progress=not args.quiet)
            record = demo_record(result, settings, config) | {"git_commit": git_commit()}
            write_json(tmp / "results.json", record)
            text = _demo_report(record)
            (tmp / "report.md").write_text(text + "\n")
    except FileNotFoundError as err:
        raise CLIError(str(err)) from err
    print(text)
    print(f"\nwrote {dest}/ (backbone, train.h5, test.h5, model/, base_model/, results.json)")
    return 0


def _demo_report(record: dict[str, Any]) -> str:
    ref, chosen = record["reference"], record["chosen"]
    if chosen == ref:
        chosen += " (chosen)"
    m = record["metrics"]
    table = metrics_table({ref: m["base"], chosen: m["dlsa"]}, reference=ref)
    sep = ", ".join(
        f"filter {i + 1}: {'- (no tail class)' if a is None else f'{100 * a:.1f}%'}"
        for i, a in enumerate(record["separation"])
    )
    settings = record["settings"]
    parts = [
        f"## Fashion-MNIST-LT (rho={settings['imbalance']:g}, seed {settings['seed']}), "
        f"train counts {record['counts']}",
        "",
        table,
        "",
        f"head-tail separation accuracy on test (share of tail among filtered): {sep}",
        "",
        stages_table(record["stages"], len(record["levels"])),
        "",
        safeguard_table(record["validation"], len(record["levels"])),
        "",
        selection_table(record["selection"]),
        "",
        "time: " + ", ".join(f"{k} {v:.0f}s" for k, v in record["timings"].items()),
    ]
    return "\n".join(parts)


def _load_model(path: str) -> DLSAClassifier:
    try:
        return DLSAClassifier.load(path)
    except DLSAInputError as err:
        raise CLIError(f"--model: {err}") from err


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a saved model on a labelled feature file."""
    model = _load_model(args.model)
    data = _load(args.features, require_labels=True, what="--features")
    try:
        result = evaluate(model, data.X, data.y, source=str(args.features))
    except ValueError as err:
        raise CLIError(str(err)) from err
    name = model.base + (" + DLSA" if model.filters_ else "")
    print(metrics_table({name: result["metrics"]}))
    if args.out:
        payload = {k: result[k] for k in ("metrics", "stages", "separation")}
        payload |= {"model": str(args.model), "features": str(args.features)}
        payload["classes"] = model.classes_.tolist()
        write_atomic(Path(args.out), lambda p: write_json(p, payload))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict labels (and probabilities, stages) for a feature file."""
    out = Path(args.out)
    if out.suffix not in (".npz", ".csv"):
        raise CLIError(f"--out {out}: use a .npz or .csv file")
    model = _load_model(args.model)
    data = _load(args.features, require_labels=False, what="--features")
    try:
        proba, stage = model.predict_proba_and_route(data.X)
    except ValueError as err:
        raise CLIError(f"--features {args.features}: {err}") from err
    pred = model.classes_[proba.argmax(1)]
    if out.suffix == ".npz":
        write_atomic(out, lambda p: _write_npz(p, pred, proba, stage, model.classes_))
    else:
        write_atomic(out, lambda p: _write_csv(p, pred, proba, stage))
    print(f"wrote {len(pred)} predictions to {out}")
    return 0


def _write_npz(
    p: Path, pred: np.ndarray, proba: np.ndarray, stage: np.ndarray, classes: np.ndarray
) -> None:
    with open(p, "wb") as fh:
        np.savez(fh, pred=pred, proba=proba.astype(np.float32), stage=stage, classes=classes)


def _write_csv(p: Path, pred: np.ndarray, proba: np.ndarray, stage: np.ndarray) -> None:
    """One row per sample: index, predicted class name (quoted as CSV needs), confidence
    and stage."""
    with open(p, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["index", "pred", "confidence", "stage"])
        for i, (label, conf, s) in enumerate(zip(pred, proba.max(1), stage, strict=True)):
            writer.writerow([i, label, f"{conf:.6f}", s])


# --------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The ``dlsa`` argument parser."""
    parser = Parser(
        prog="dlsa", description="Dynamic Label Space Adjustment for long-tailed recognition"
    )
    parser.add_argument("--version", action="version", version=f"dlsa {__version__}")
    _add_output_flags(parser, argparse.Namespace())
    common = Parser(add_help=False)
    _add_output_flags(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:  # noqa: A002
        return sub.add_parser(name, help=help, parents=[common])

    fit = command("fit", help="train base and base + DLSA, evaluate once on --test")
    fit.add_argument("--train", required=True, help="train features (.h5/.hdf5/.npz)")
    fit.add_argument("--test", required=True, help="test features, used once at the end")
    fit.add_argument("--out", required=True, help="results folder")
    fit.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    fit.add_argument(
        "--reference",
        default=None,
        choices=sorted(BASES),
        help="base method fitted alone beside the chosen model, to show what the choice "
        "bought (default: --base, or balsoftmax when the base is chosen by selection)",
    )
    add_config_arguments(fit)
    fit.set_defaults(func=cmd_fit)

    dg = command(
        "diagnose",
        help="will DLSA help on these features? filters, separation, out-of-fold gain, verdict",
    )
    dg.add_argument("--train", required=True, help="train features (.h5/.hdf5/.npz)")
    dg.add_argument(
        "--reference", default=None, choices=sorted(BASES),
        help="base method DLSA is measured against (default: --base, or balsoftmax)",
    )  # fmt: skip
    dg.add_argument("--out", default=None, help="optional JSON file for the diagnosis")
    add_config_arguments(dg)
    dg.set_defaults(func=cmd_diagnose)

    ev = command("evaluate", help="metrics of a saved model on labelled features")
    ev.add_argument("--model", required=True, help="model folder written by fit")
    ev.add_argument("--features", required=True, help="labelled features")
    ev.add_argument("--out", default=None, help="optional JSON file for the metrics")
    ev.set_defaults(func=cmd_evaluate)

    cmp = command("compare", help="every base alone and with DLSA, Table-1 layout")
    cmp.add_argument("--train", required=True, help="train features (.h5/.hdf5/.npz)")
    cmp.add_argument("--test", required=True, help="test features, used once per model")
    cmp.add_argument(
        "--bases",
        default="balsoftmax,cbs,cosine,m2m,ride",
        help="comma-separated base methods; the first one's filters are shared",
    )
    cmp.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    cmp.add_argument("--out", required=True, help="results folder")
    cmp.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    add_config_arguments(cmp)
    cmp.set_defaults(func=cmd_compare)

    ext = command("extract", help="embed image files with a saved stage-1 backbone")
    ext.add_argument("--backbone", required=True, help="backbone folder (e.g. dlsa-demo/backbone)")
    ext.add_argument(
        "--images", required=True, help="folder of image files, or the root of --split-list"
    )
    ext.add_argument("--split-list", default=None, help="'relative/path label' lines (labelled)")
    ext.add_argument("--size", type=int, default=None, help="image side (default: recorded)")
    ext.add_argument("--out", required=True, help="feature file (.h5/.hdf5/.npz)")
    ext.set_defaults(func=cmd_extract)

    fig = command("figures", help="confusion, clusters, separation and t-SNE figures")
    fig.add_argument("--model", required=True, help="model folder written by fit")
    fig.add_argument("--features", required=True, help="labelled features (e.g. the test set)")
    fig.add_argument("--base-model", default=None, help="base model folder, for the difference")
    fig.add_argument("--out", required=True, help="folder for the PNG files")
    fig.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    fig.set_defaults(func=cmd_figures)

    demo = command(
        "demo", help="Fashion-MNIST-LT end to end: backbone, features, base vs base + DLSA"
    )
    demo.add_argument(
        "--data-root",
        default="/usr/share/datasets/fashion-mnist",
        help="folder of the four Fashion-MNIST idx files (apt-get install dataset-fashion-mnist)",
    )
    demo.add_argument("--imbalance", type=float, default=100.0, help="rho = n_max / n_min")
    demo.add_argument("--seed", type=int, default=0, help="seed of data, backbone and DLSA")
    demo.add_argument(
        "--n-max", type=int, default=6000, help="images of the largest class (at most 6000)"
    )
    demo.add_argument("--backbone-epochs", type=int, default=30, help="stage-1 epochs")
    demo.add_argument("--backbone-sampler", choices=["ce", "cbs"], default="ce")
    demo.add_argument("--out", default="dlsa-demo", help="results folder (replaced)")
    add_config_arguments(demo)
    demo.set_defaults(func=cmd_demo)

    pr = command("predict", help="predict labels of (unlabelled) features")
    pr.add_argument("--model", required=True, help="model folder written by fit")
    pr.add_argument("--features", required=True, help="features (labels optional)")
    pr.add_argument("--out", required=True, help="predictions file (.npz or .csv)")
    pr.set_defaults(func=cmd_predict)

    from dlsa.train_cli import add_train_command  # stage 1 on image files; flags live there

    add_train_command(command("train", help="stage 1: train a backbone on image files"))
    return parser


def _add_output_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    """-q / -v / --log-level / --debug, accepted before and after the command (after it,
    with ``default=SUPPRESS`` so that they do not reset a value given before it)."""

    def dflt(value: Any) -> Any:
        return value if default is not argparse.SUPPRESS else argparse.SUPPRESS

    parser.add_argument(
        "-q", "--quiet", action="store_true", default=dflt(False),
        help="only errors on stderr: no progress bars, warnings or log messages (results "
        "still go to stdout)",
    )  # fmt: skip
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=dflt(False),
        help="debug log messages of dlsa on stderr",
    )  # fmt: skip
    parser.add_argument(
        "--log-level", default=dflt(None), help="level of the root logger (INFO, DEBUG, ...)"
    )
    parser.add_argument(
        "--debug", action="store_true", default=dflt(False),
        help="show the traceback of a user error too (bugs always show one)",
    )  # fmt: skip


def setup_logging(args: argparse.Namespace) -> None:
    """Log to stderr: errors only with -q, dlsa's debug messages with -v, warnings (also
    Python warnings) otherwise; ``--log-level`` sets the root logger's level."""
    level = "ERROR" if args.quiet else (args.log_level or "WARNING").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.captureWarnings(True)
    logger.setLevel("DEBUG" if args.verbose else logging.NOTSET)


def one_line(err: BaseException) -> str:
    """An error message on one line (a multi-line message is joined with "; ")."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return "; ".join(lines) or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dlsa`` command.

    A user error (:class:`CLIError`, :class:`dlsa.errors.DLSAInputError`, a training
    run that diverged (``FloatingPointError``), an ``OSError`` such as a full disk or a
    denied permission, a bad flag) is one line
    ``dlsa <command>: error: <message>`` on stderr with exit status 2, and nothing is
    written; ``--debug`` adds its traceback. Any other exception is a bug and keeps its
    traceback.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.quiet and args.verbose:
            parser.error("-q/--quiet and -v/--verbose exclude each other")
    except SystemExit as done:  # --help, --version, or a bad flag (already reported)
        return done.code if isinstance(done.code, int) else 2
    setup_logging(args)
    try:
        return int(args.func(args))
    except (CLIError, DLSAInputError, FloatingPointError, OSError) as err:
        if args.debug:
            traceback.print_exc()
        print(f"dlsa {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dlsa {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
