"""The ``dlsa`` commands: each reads and checks all its inputs first
(:mod:`dlsa.cli.inputs`), then runs the library, and writes its outputs atomically. They
touch the test features only in the final evaluation and contain no math."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from dlsa._version import __version__
from dlsa.analysis.evaluation import per_class
from dlsa.analysis.pair import Step, fit_and_evaluate_pair
from dlsa.analysis.report import calibration_table, demo_report, fit_report, metrics_table
from dlsa.cascade.deployment_prior import PriorSpec
from dlsa.cli.common import (
    CLIError,
    apply_test_prior,
    git_commit,
    load_model_arg,
    one_line,
    prior_record,
    seed_everything,
    set_fit_prior,
    write_json,
)
from dlsa.cli.evidence import with_provenance
from dlsa.cli.flags import dataclass_from_args, resolve_config
from dlsa.cli.inputs import check_base_model, check_features_for, compare_lists, training_inputs
from dlsa.config import DLSAConfig, to_dict
from dlsa.estimator import DLSAClassifier
from dlsa.io.outputs import (
    OutputRefusedError,
    check_file,
    check_folder,
    output_file,
    output_folder,
)
from dlsa.metrics.per_class import write_per_class_csv
from dlsa.selection import reference_params


def cmd_fit(args: argparse.Namespace) -> int:
    """Train base and base + DLSA on --train, evaluate both once on --test."""
    config = resolve_config(args)
    config = dataclasses.replace(config, verbose=not args.quiet)
    check_folder(args.out, overwrite=args.overwrite, flag="--out")
    inputs = training_inputs(args, reference_params(config, args.reference), config)
    config = with_provenance(config, args, inputs.train)
    train, test, val = inputs.train, inputs.test, inputs.val
    seed_everything(config.random_state)
    dest = Path(args.out)
    with output_folder(dest, overwrite=args.overwrite, flag="--out", command="fit") as tmp:
        results = _fit_and_evaluate(
            config, train, test, tmp, args.reference, inputs.test_prior, val=val,
            calibrate=args.calibrate,
        )  # fmt: skip
        results["train"], results["test"] = str(args.train), str(args.test)
        results["val"] = None if val is None else str(args.val)
        write_json(tmp / "results.json", results)
        write_per_class_csv(tmp / "per_class.csv", results.pop("per_class"))
        text = fit_report(results)
        (tmp / "report.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    print(f"\nwrote {dest}/ (model/, base_model/, results.json, report.md, per_class.csv)")
    return 0


def _fit_and_evaluate(
    config: DLSAConfig,
    train: Any,
    test: Any,
    folder: Path,
    reference: str | None = None,
    test_prior: PriorSpec = None,
    *,
    val: Any = None,
    calibrate: bool = False,
) -> dict[str, Any]:
    timings: dict[str, float] = {}

    def set_priors(models: dict[str, DLSAClassifier]) -> None:
        if test_prior is not None:  # read and checked against --train before the fits
            for model in models.values():
                set_fit_prior(model, test_prior, train, test, val)

    models, pair = fit_and_evaluate_pair(
        config, train, test, folder, reference=reference, val=val, calibrate=calibrate,
        timings=timings, before_save=set_priors, around=_fit_errors(train, val),
        source="--test",
    )  # fmt: skip
    evals = pair["evals"]
    rows = per_class(models["dlsa"], evals["dlsa"])
    base_rows = per_class(models["base"], evals["base"])
    for row, base_row in zip(rows, base_rows, strict=True):
        row["reference_recall"] = base_row["recall"]
    return {
        "per_class": rows,
        **prior_record(models["dlsa"]),
        "base_test_prior": prior_record(models["base"]),
        "dlsa_version": __version__,
        "git_commit": git_commit(),
        "seed": config.random_state,
        "config": to_dict(config),
        "timings_s": timings,
        "base": {k: evals["base"][k] for k in ("metrics", "calibration")}
        | {"temperature": models["base"].temperature_},
        "dlsa": {k: evals["dlsa"][k] for k in ("metrics", "stages", "separation", "calibration")}
        | {"temperature": models["dlsa"].temperature_},
        "calibrated_on": None
        if not calibrate
        else ("--val" if val is not None else "out of fold"),
        "stage_comparison": pair["stage_comparison"],
        "levels": models["dlsa"].reports_,
        "validation": models["dlsa"].validation_,
        "selection": models["dlsa"].selection_,
        "reference": pair["reference"],
        "chosen": pair["chosen"],
        "n_levels": len(models["dlsa"].filters_),
        "classes": models["dlsa"].classes_.tolist(),
        "class_counts": models["dlsa"].class_counts_.tolist(),
    }


def _fit_errors(train: Any, val: Any) -> Callable[[Step], AbstractContextManager[None]]:
    """Around each step of :func:`fit_and_evaluate_pair`: a failed fit or calibration
    becomes ``dlsa fit``'s one-line message naming ``--train`` or ``--calibrate``."""

    @contextmanager
    def around(step: Step) -> Iterator[None]:
        try:
            yield
        except (ValueError, FloatingPointError) as err:
            if step == "fit":
                raise CLIError(f"--train {getattr(train, 'path', '')}: {err}") from err
            if step == "calibrate":
                on = "out of fold on --train" if val is None else f"on --val {val.path}"
                raise CLIError(f"--calibrate ({on}): {one_line(err)}") from err
            raise

    return around


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Filters once, DLSA's out-of-fold gain over the reference, and a verdict."""
    from dlsa.analysis.diagnose import diagnose, diagnose_params, diagnose_report

    config = dataclasses.replace(resolve_config(args), verbose=False)
    reference = args.reference or (config.base if config.base != "auto" else "balsoftmax")
    if args.out:
        check_file(args.out, overwrite=args.overwrite, flag="--out")
    inputs = training_inputs(args, *diagnose_params(config, reference))
    config = with_provenance(config, args, inputs.train)
    train, val = inputs.train, inputs.val
    seed_everything(config.random_state)
    try:
        result = diagnose(
            train.X, train.y, config, reference, val=None if val is None else (val.X, val.y)
        )
    except (ValueError, FloatingPointError) as err:
        raise CLIError(f"--train {args.train}: {err}") from err
    text = diagnose_report(result)
    if args.out:
        payload = result | {"train": str(args.train), "reference": reference}
        payload["dlsa_version"] = __version__
        output_file(
            args.out, lambda p: write_json(p, payload), overwrite=args.overwrite, flag="--out"
        )
    print(text)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Every base alone and with DLSA over seeds; filters trained once per seed."""
    from dlsa.analysis.comparison import compare_bases, comparison_table, dlsa_params

    config = dataclasses.replace(resolve_config(args), verbose=False)
    bases, seeds = compare_lists(args, config)
    check_folder(args.out, overwrite=args.overwrite, flag="--out")
    inputs = training_inputs(args, *(dlsa_params(base, config) for base in bases))
    config = with_provenance(config, args, inputs.train)
    train, test = inputs.train, inputs.test
    seed_everything(seeds[0])
    dest = Path(args.out)
    with output_folder(dest, overwrite=args.overwrite, flag="--out", command="compare") as tmp:
        try:
            result = compare_bases(
                train.X, train.y, test.X, test.y,
                bases=bases, config=config, seeds=seeds, progress=not args.quiet,
                peer=args.peer,
            )  # fmt: skip
        except (ValueError, FloatingPointError) as err:
            raise CLIError(f"--train {args.train}: {err}") from err
        record = dict(result) | {"git_commit": git_commit(), "dlsa_version": __version__}
        record |= {"train": str(args.train), "test": str(args.test)}
        write_json(tmp / "comparison.json", record)
        text = comparison_table(result)
        (tmp / "comparison.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    print(f"\nwrote {dest}/ (comparison.md, comparison.json)")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    """The paper's figures for a saved model on labelled features."""
    from dlsa.analysis.figures import write_figures_file

    check_folder(args.out, overwrite=args.overwrite, flag="--out")
    model = load_model_arg(args.model)
    base = load_model_arg(args.base_model) if args.base_model else None
    if base is not None:
        check_base_model(model, base, (args.model, args.base_model))
    check_features_for(model, args.model, args.features, labelled=True)
    dest = Path(args.out)
    with output_folder(dest, overwrite=args.overwrite, flag="--out", command="figures") as tmp:
        try:
            files = write_figures_file(model, args.features, tmp, base=base)
        except ValueError as err:
            raise CLIError(f"--features {_named(err, args.features)}") from err
    print("\n".join(str(dest / f.name) for f in files))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Fashion-MNIST-LT end to end: backbone, features, base vs base + DLSA."""
    from dlsa.analysis.pipeline import DemoSettings, demo_record, run_demo

    config = resolve_config(args)
    settings = dataclass_from_args(DemoSettings, args, device=config.device)
    seed_everything(settings.seed)
    dest = Path(args.out)
    try:
        with output_folder(dest, overwrite=args.overwrite, flag="--out", command="demo") as tmp:
            result = run_demo(settings, config, tmp, progress=not args.quiet)
            record = demo_record(result, settings, config) | {"git_commit": git_commit()}
            write_json(tmp / "results.json", record)
            text = demo_report(record)
            (tmp / "report.md").write_text(text + "\n", encoding="utf-8")
    except FileNotFoundError as err:
        raise CLIError(str(err)) from err
    print(text)
    files = "backbone, train.h5, val.h5, test.h5, model/, base_model/, results.json"
    print(f"\nwrote {dest}/ ({files})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a saved model on a labelled feature file of any size, read a chunk of
    rows at a time (:func:`dlsa.analysis.streaming.evaluate_file`)."""
    from dlsa.analysis.streaming import evaluate_file

    for flag, dest in (("--out", args.out), ("--per-class", args.per_class)):
        if dest:
            check_file(dest, overwrite=args.overwrite, flag=flag)
    model = load_model_arg(args.model)
    check_features_for(model, args.model, args.features, labelled=True)
    apply_test_prior(model, args.test_prior, args.features)
    try:
        result = evaluate_file(model, args.features, source=str(args.features))
    except ValueError as err:
        raise CLIError(f"--features {_named(err, args.features)}") from err
    name = model.base + (" + DLSA" if model.filters_ else "")
    print(metrics_table({name: result["metrics"]}))
    print(calibration_table({name: result["calibration"]}, {name: model.temperature_}))
    if args.out:
        payload = {k: result[k] for k in ("metrics", "stages", "separation", "calibration")}
        payload |= {"model": str(args.model), "features": str(args.features)}
        payload |= prior_record(model)
        payload["classes"] = model.classes_.tolist()
        payload["dlsa_version"] = __version__
        output_file(
            args.out, lambda p: write_json(p, payload), overwrite=args.overwrite, flag="--out"
        )
    if args.per_class:
        rows = per_class(model, result)
        output_file(
            args.per_class, lambda p: write_per_class_csv(p, rows),
            overwrite=args.overwrite, flag="--per-class",
        )  # fmt: skip
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict labels (and probabilities, stages) for a feature file of any size, read
    and written a chunk of rows at a time (:func:`dlsa.analysis.streaming.predict_file`)."""
    from dlsa.analysis.streaming import OUTPUT_SUFFIXES, predict_file

    out = Path(args.out)
    if out.suffix not in OUTPUT_SUFFIXES:
        raise CLIError(f"--out {out}: use a .npz or .csv file")
    check_file(out, overwrite=args.overwrite, flag="--out")
    model = load_model_arg(args.model)
    check_features_for(model, args.model, args.features, labelled=False)
    apply_test_prior(model, args.test_prior, args.features)
    if model.test_prior_estimate_ is not None:
        print(f"test prior: {json.dumps(prior_record(model))}")
    try:
        n_rows = predict_file(model, args.features, out, overwrite=args.overwrite, flag="--out")
    except OutputRefusedError:
        raise
    except ValueError as err:
        raise CLIError(f"--features {_named(err, args.features)}") from err
    print(f"wrote {n_rows} predictions to {out}")
    return 0


def _named(err: Exception, path: str) -> str:
    """The error's message, starting with the file's name if it does not already."""
    text = str(err)
    return text if text.startswith(str(path)) else f"{path}: {text}"
