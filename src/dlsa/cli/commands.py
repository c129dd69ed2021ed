"""The ``dlsa`` commands: each reads and checks all its inputs first
(:mod:`dlsa.cli.inputs`), then runs the library, and writes its outputs atomically. They
touch the test features only in the final evaluation and contain no math."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from dlsa._version import __version__
from dlsa.analysis.evaluation import per_class
from dlsa.analysis.pair import calibrate_pair, evaluate_pair, fit_pair
from dlsa.analysis.report import calibration_table, demo_report, fit_report, metrics_table
from dlsa.cascade.test_prior import PriorSpec
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
from dlsa.cli.flags import dataclass_from_args, resolve_config
from dlsa.cli.inputs import check_base_model, check_features_for, compare_lists, training_inputs
from dlsa.config import DLSAConfig, to_dict
from dlsa.errors import DLSAInputError, ModelFileError
from dlsa.io.file_map import file_map_path, write_file_map
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
    try:
        models = fit_pair(
            config, train.X, train.y, reference=reference, timings=timings,
            val=None if val is None else (val.X, val.y),
        )  # fmt: skip
    except (ValueError, FloatingPointError) as err:
        raise CLIError(f"--train {getattr(train, 'path', '')}: {err}") from err
    if calibrate:
        try:
            calibrate_pair(models, train, val, timings)
        except (ValueError, FloatingPointError) as err:
            on = "out of fold on --train" if val is None else f"on --val {val.path}"
            raise CLIError(f"--calibrate ({on}): {one_line(err)}") from err
    if test_prior is not None:  # read and checked against --train before the fits
        for model in models.values():
            set_fit_prior(model, test_prior, train, test, val)
    models["dlsa"].save(folder / "model")
    models["base"].save(folder / "base_model")
    pair = evaluate_pair(models, test.X, test.y, source="--test")
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


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Filters once, DLSA's out-of-fold gain over the reference, and a verdict."""
    from dlsa.analysis.diagnose import diagnose, diagnose_params, diagnose_report

    config = dataclasses.replace(resolve_config(args), verbose=False)
    reference = args.reference or (config.base if config.base != "auto" else "balsoftmax")
    if args.out:
        check_file(args.out, overwrite=args.overwrite, flag="--out")
    inputs = training_inputs(args, *diagnose_params(config, reference))
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
    train, test = inputs.train, inputs.test
    seed_everything(seeds[0])
    dest = Path(args.out)
    with output_folder(dest, overwrite=args.overwrite, flag="--out", command="compare") as tmp:
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
        (tmp / "comparison.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    print(f"\nwrote {dest}/ (comparison.md, comparison.json)")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    """Embed image files with a saved stage-1 backbone or a pretrained encoder
    (``LIBRARY:MODEL`` with ``--weights``) into a feature file; prints images/s.

    Under torchrun every rank embeds its share of the images and rank 0 alone writes the
    feature file and its ``.files.csv``, the image file of each row
    (:mod:`dlsa.backbones.shard_extract`, :mod:`dlsa.io.file_map`)."""
    import time

    from dlsa.backbones import distributed
    from dlsa.backbones.extract import FlipAveraged
    from dlsa.backbones.shard_extract import device_for_rank, extract_to_file_sharded
    from dlsa.datasets import DataFileError, ImageListDataset, read_split_list

    out = Path(args.out)
    file_map = file_map_path(out)
    check_file(out, overwrite=args.overwrite, flag="--out")
    check_file(file_map, overwrite=args.overwrite, flag="--out")
    model, size, resize, mode, class_names = _extract_backbone(args)
    if args.split_list:
        try:
            paths, labels = read_split_list(args.split_list, args.images)
        except (OSError, ValueError) as err:
            raise CLIError(f"--split-list: {err}") from err
    else:
        paths, labels = _images_to_extract(Path(args.images), class_names)
    dataset = ImageListDataset(
        paths, np.zeros(len(paths), dtype=np.int64), size=size, resize=resize,
        mode=mode,  # type: ignore[arg-type]
    )  # fmt: skip
    if args.batch_size < 1 or args.workers < 0:
        raise CLIError("--batch-size must be at least 1 and --workers at least 0")
    device = device_for_rank(args.device)
    info = distributed.setup("cpu")  # gloo: the ranks exchange only tiny CPU messages
    start = time.perf_counter()
    try:
        extract_to_file_sharded(
            FlipAveraged(model) if args.flip_average else model, dataset, labels, out,
            split="extract", backbone_id=str(args.backbone), info=info,
            batch_size=args.batch_size, device=device, progress=not args.quiet,
            num_workers=args.workers, float16=args.float16, overwrite=args.overwrite,
            flag="--out",
        )  # fmt: skip
    except DataFileError as err:  # an unreadable listed image
        raise CLIError(str(err)) from err
    finally:
        distributed.teardown(info)
    if not info.is_main:
        return 0
    seconds = time.perf_counter() - start
    output_file(
        file_map, lambda p: write_file_map(p, paths), overwrite=args.overwrite, flag="--out"
    )
    print(
        f"wrote {len(paths)} feature rows to {out} (the file of each row in {file_map.name}); "
        f"{len(paths) / max(seconds, 1e-9):.1f} images/s"
    )
    return 0


def _extract_backbone(args: argparse.Namespace) -> tuple[Any, int, int | None, str, Any]:
    """The model of ``--backbone``, its image side and resize, colour mode and class
    order (a stage-1 run folder's, or None: class folders by sorted name)."""
    from dlsa.backbones import load_checkpoint
    from dlsa.backbones.pretrained import load_pretrained, parse_backbone

    pretrained = parse_backbone(str(args.backbone))
    if pretrained is not None:
        if not args.weights:
            raise CLIError(f"--backbone {args.backbone} needs --weights (a local file)")
        try:
            model = load_pretrained(*pretrained, args.weights)
        except (ModelFileError, FileNotFoundError) as err:
            raise CLIError(f"--weights {one_line(err)}") from err
        except DLSAInputError as err:
            raise CLIError(f"--backbone {one_line(err)}") from err
        except (OSError, ImportError, ValueError, RuntimeError, KeyError) as err:
            raise CLIError(f"--backbone {args.backbone}: {one_line(err)}") from err
        size = args.size or model.input_size  # the model's crop, and its resize ratio
        return model, int(size), round(size * model.resize / model.input_size), "RGB", None
    if args.weights:
        raise CLIError("--weights is for a LIBRARY:MODEL backbone; a folder has its own")
    try:
        model, meta = load_checkpoint(args.backbone)
    except (OSError, ValueError, KeyError) as err:
        raise CLIError(f"--backbone {args.backbone}: {err}") from err
    size = args.size or meta.get("image_size")
    if not size:
        raise CLIError("--size is required: the backbone does not record its image size")
    mode = "L" if model.config()["in_channels"] == 1 else "RGB"
    return model, int(size), None, mode, meta.get("class_names")


def _images_to_extract(
    folder: Path, class_names: list[str] | None
) -> tuple[list[Path], np.ndarray | None]:
    """The images of ``--images``: a flat folder (no labels), or class folders read as
    ``dlsa train`` reads them, labelled in the backbone's class order when it recorded
    one (so that train, validation and test features agree), else by sorted name."""
    from dlsa.datasets import IMAGE_EXTENSIONS, DataFileError, read_class_folders

    if not folder.is_dir():
        raise CLIError(f"--images {folder}: no such folder")
    flat = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if flat or not any(p.is_dir() for p in folder.iterdir()):
        if not flat:
            raise CLIError(f"--images {folder}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
        return flat, None
    try:
        paths, labels, names = read_class_folders(folder)
    except DataFileError as err:
        raise CLIError(f"--images {err}") from err
    if class_names is None:
        return paths, labels
    order = {name: i for i, name in enumerate(class_names)}
    unknown = [name for name in names if name not in order]
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise CLIError(
            f"--images {folder}: class folders the backbone was not trained on: {shown}"
        )
    return paths, np.array([order[n] for n in names], dtype=np.int64)[labels]


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
