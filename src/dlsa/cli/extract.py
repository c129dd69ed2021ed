"""``dlsa extract``: embed image files into a feature file, with the provenance of the
features (``backbone_trained_on``: whether the backbone trained on these images).

For a ``dlsa train`` run folder the provenance is worked out per image from the images
the run trained on (:mod:`dlsa.backbones.provenance`), and ``--subset`` keeps only the
images it trained on or held out; a pretrained ``LIBRARY:MODEL`` encoder may have
trained on anything, so its features are "unknown" unless ``--backbone-trained-on`` says;
so may a ``MODULE:CALLABLE`` encoder of your own code (:mod:`dlsa.backbones.custom`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from dlsa.cli.common import CLIError, one_line
from dlsa.errors import DLSAInputError, ModelFileError
from dlsa.io.file_map import file_map_path, write_file_map
from dlsa.io.outputs import check_file, output_file

SUBSETS = ("all", "train", "holdout")
"""Values of ``--subset``."""


def cmd_extract(args: argparse.Namespace) -> int:
    """Embed image files with a saved stage-1 backbone, a pretrained encoder
    (``LIBRARY:MODEL`` with ``--weights``) or any torch encoder (``MODULE:CALLABLE``,
    :mod:`dlsa.backbones.custom`) into a feature file; prints images/s.

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
    model, size, resize, mode, class_names, meta = _extract_backbone(args)
    if args.split_list:
        try:
            paths, labels = read_split_list(args.split_list, args.images)
        except (OSError, ValueError) as err:
            raise CLIError(f"--split-list: {err}") from err
    else:
        paths, labels = _images_to_extract(Path(args.images), class_names)
    paths, labels, trained_on = _subset_and_provenance(args, paths, labels, meta)
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
            flag="--out", backbone_trained_on=trained_on,
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
        f"wrote {len(paths)} feature rows to {out} (the file of each row in {file_map.name}; "
        f"backbone trained on them: {trained_on}); {len(paths) / max(seconds, 1e-9):.1f} images/s"
    )
    return 0


def _extract_backbone(
    args: argparse.Namespace,
) -> tuple[Any, int, int | None, str, Any, dict[str, Any] | None]:
    """The model of ``--backbone``, its image side and resize, colour mode, class order
    (a stage-1 run folder's, or None: class folders by sorted name) and the metadata of
    a run folder (None for a pretrained encoder)."""
    from dlsa.backbones import load_checkpoint
    from dlsa.backbones.custom import parse_factory
    from dlsa.backbones.pretrained import load_pretrained, parse_backbone

    try:
        factory = parse_factory(str(args.backbone))
    except DLSAInputError as err:
        raise CLIError(one_line(err)) from err
    if factory is not None:
        return _factory_backbone(args)
    if args.mean or args.std:
        raise CLIError("--mean and --std are for a MODULE:CALLABLE backbone")
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
        resize = args.resize or round(size * model.resize / model.input_size)
        return model, int(size), _resize(int(size), resize), "RGB", None, None
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
    return model, int(size), _resize(int(size), args.resize), mode, meta.get("class_names"), meta


def _resize(size: int, resize: int | None) -> int | None:
    """``resize``, checked against the crop ``size``."""
    if resize is not None and resize < size:
        raise CLIError(f"--resize {resize} must be at least the image side {size}")
    return resize


def _factory_backbone(
    args: argparse.Namespace,
) -> tuple[Any, int, int | None, str, Any, dict[str, Any] | None]:
    """A ``MODULE:CALLABLE`` backbone (:func:`dlsa.backbones.custom.load_encoder`), with
    the preprocessing of the flags, else of the module's ``dlsa_preprocess``."""
    from dlsa.backbones.custom import load_encoder

    try:
        model = load_encoder(
            str(args.backbone), args.weights, size=args.size, resize=args.resize,
            mean=_floats(args.mean, "--mean"), std=_floats(args.std, "--std"),
        )  # fmt: skip
    except (ModelFileError, FileNotFoundError) as err:
        raise CLIError(f"--weights {one_line(err)}") from err
    except DLSAInputError as err:
        message = one_line(err)
        prefix = "" if message.startswith("--") else f"--backbone {args.backbone}: "
        raise CLIError(prefix + message) from err
    except Exception as err:  # the user's factory or module failed: one line, exit 2
        raise CLIError(
            f"--backbone {args.backbone}: {type(err).__name__}: {one_line(err)}"
        ) from err
    return model, model.input_size, model.resize, "RGB", None, None


def _floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    """``"0.5,0.5,0.5"`` as floats (None stays None)."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise CLIError(f"{flag} {text}: expected 3 comma-separated numbers") from None
    if len(values) != 3:
        raise CLIError(f"{flag} {text}: expected 3 comma-separated numbers (R,G,B)")
    return values


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


def _subset_and_provenance(
    args: argparse.Namespace,
    paths: list[Path],
    labels: np.ndarray | None,
    meta: dict[str, Any] | None,
) -> tuple[list[Path], np.ndarray | None, str]:
    """The N images to embed (paths and labels (N,) or None), kept by ``--subset``, and
    whether the backbone trained on them: ``--backbone-trained-on`` if given, else
    "seen", "unseen" or "mixed" from a run folder's record, else "unknown"."""
    from dlsa.backbones.provenance import provenance, run_images

    run = None if meta is None else run_images(args.backbone, meta)
    if args.subset != "all":
        if meta is None:
            raise CLIError(f"--subset {args.subset} needs a dlsa train run folder as --backbone")
        if run is None:
            raise CLIError(
                f"--subset {args.subset}: --backbone {args.backbone} does not record its "
                "training images, or they changed since it was trained"
            )
        chosen = run.trained if args.subset == "train" else run.held_out
        keep = np.array([p.resolve() in chosen for p in paths], dtype=bool)
        if not keep.any():
            what = "trained on" if args.subset == "train" else "held out"
            raise CLIError(
                f"--subset {args.subset}: none of the --images is among the {len(chosen)} "
                f"images {args.backbone} {what} (its --images: {run.root})"
            )
        paths = [p for p, k in zip(paths, keep, strict=True) if k]
        labels = None if labels is None else labels[keep]
    if args.backbone_trained_on is not None:
        return paths, labels, args.backbone_trained_on
    return paths, labels, provenance(paths, None if run is None else run.trained)
