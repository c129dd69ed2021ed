"""Transfer protocol: Balanced Softmax alone, the paper preset and the default
configuration on the sets of one half of the panel (``benchmarks/protocol/panel.py``), 3 seeds.

Every model is fitted on the train features and evaluated once on the test features.
Results are cached per (set, model, seed) as JSON under ``--out``, so an interrupted run
resumes. The table gives, per set, the mean ± std over seeds of overall accuracy, the
default's gain over Balanced Softmax (overall and few-shot), filter 1's head-tail
separation (tail share among the test samples it routes vs among all test samples; out of
fold on train when the default chose no filter), and what the default chose.

Usage::

    OMP_NUM_THREADS=1 python -m benchmarks.protocol.transfer --half tune --panel runs/panel \\
        --out runs/transfer [--seeds 0,1,2] [--paper-seeds 0]
    OMP_NUM_THREADS=1 python -m benchmarks.protocol.transfer --half report --seeds 0 \\
        --release-presets ImgNet_CE_R50_bsm,imagenet-lt --out runs/transfer-release
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.protocol.panel import REPORT, TUNE
from dlsa import DLSAClassifier
from dlsa.analysis.evaluation import evaluate
from dlsa.config import DLSAConfig, SelectionConfig, get_preset
from dlsa.io.features import load_features


def _chosen_base(default_record: dict) -> DLSAConfig:
    """The base method the default chose in its first round, alone (no DLSA, no selection)."""
    first = default_record["selection"]["rounds"][0]
    params = next(row["params"] for row in first["candidates"] if row["name"] == first["chosen"])
    return DLSAConfig(
        depth=0, base=params["base"], base_params=params.get("base_params", {}), selection=None
    )


def model_config(name: str, seed: int, default_record: dict | None = None) -> DLSAConfig:
    if name == "chosen-base":
        if default_record is None:
            raise SystemExit("chosen-base needs the default's record of the same seed")
        cfg = _chosen_base(default_record)
    elif name == "balsoftmax":
        cfg = DLSAConfig(depth=0, base="balsoftmax", selection=None)
    elif name in ("default", "default-val", "default-now", "default-futile"):
        # default-val: decided on the set's val.h5; default-now / default-futile: the
        # default of a later tree, beside "default" records cached by an older tree
        # (runs/transfer-v3: default 84c42e0, default-now 3224664, default-futile: the
        # futile drop rule)
        cfg = DLSAConfig()
    elif name == "paper":  # the headline preset (the release's PaCo + Balanced Softmax)
        cfg = get_preset("imagenet-lt")
    elif name.startswith("paper:"):  # a release preset by name
        cfg = get_preset(name.split(":", 1)[1])
    elif name == "default-v1":  # the default before the max-t bar: per-candidate bar, crt too
        from dlsa.config import BASE_NAMES

        sel = SelectionConfig(multiplicity="per-candidate", bases=BASE_NAMES)
        cfg = dataclasses.replace(DLSAConfig(), selection=sel)
    elif name == "default-std":  # a candidate change: the flow's input standardized
        cfg = DLSAConfig()
        cfg = dataclasses.replace(
            cfg, flow_filter=dataclasses.replace(cfg.flow_filter, standardize=True)
        )
    else:
        raise SystemExit(f"unknown model {name}")
    return dataclasses.replace(cfg, random_state=seed)


def run_one(folder: Path, name: str, seed: int, default_record: dict | None = None) -> dict:
    train, test = load_features(folder / "train.h5"), load_features(folder / "test.h5")
    cfg = model_config(name, seed, default_record)
    val = {}
    if name == "default-val":
        v = load_features(folder / "val.h5")
        val = {"X_val": v.X, "y_val": v.y}
    start = time.perf_counter()
    clf = DLSAClassifier(**cfg.estimator_params()).fit(train.X, train.y, **val)
    seconds = time.perf_counter() - start
    ev = evaluate(clf, test.X, test.y)
    record = {
        "metrics": ev["metrics"],
        "separation": ev["separation"][0] if ev["separation"] else None,
        "seconds": seconds,
        "chosen": (clf.selection_ or {}).get("chosen"),
        "selection": clf.selection_,
        "n_train": int(len(train.y)),
    }
    return record


def cached(out: Path, set_name: str, name: str, seed: int, panel: Path) -> dict:
    path = out / set_name / f"{name}-s{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    default = cached(out, set_name, "default", seed, panel) if name == "chosen-base" else None
    record = run_one(panel / set_name, name, seed, default)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, default=float))
    print(f"{set_name} {name} s{seed}: {100 * record['metrics']['overall']:.2f} "
          f"({record['seconds']:.0f}s) {record['chosen'] or ''}", flush=True)  # fmt: skip
    return record


def _ms(values: list[float | None], signed: bool = False) -> str:
    vals = [100 * v for v in values if v is not None]
    if not vals:
        return "-"
    std = np.std(vals, ddof=1) if len(vals) > 1 else 0.0
    return f"{np.mean(vals):+.2f} ± {std:.2f}" if signed else f"{np.mean(vals):.1f} ± {std:.1f}"


def _oof_separation(selection: dict | None) -> str:
    """Filter-1 separation of the depth-1 30% candidate, out of fold on train."""
    if not selection:
        return "-"
    for rnd in selection["rounds"]:
        for row in rnd["candidates"]:
            if row.get("tail_share_routed") is not None:
                return (f"{100 * row['tail_share_routed']:.0f} vs "
                        f"{100 * row['tail_share_input']:.0f} (oof)")  # fmt: skip
    return "-"


def _separation(record: dict) -> str:
    sep = record["separation"]
    if sep and sep.get("accuracy") is not None:
        return f"{100 * sep['tail_share_selected']:.0f} vs {100 * sep['tail_share_input']:.0f}"
    return _oof_separation(record["selection"])


def _dlsa_on_top(defaults: list[dict], bases: list[dict | None]) -> str:
    """Test gain of base + DLSA over the same base alone, over the seeds that chose DLSA."""
    gains = [
        d["metrics"]["overall"] - b["metrics"]["overall"]
        for d, b in zip(defaults, bases, strict=True)
        if b is not None
    ]
    return f"{_ms(gains, True)} ({len(gains)})" if gains else "not chosen"


def _paired_gains(runs: list[dict], refs: list[dict]) -> tuple[list[float], list[float | None]]:
    """Per seed, overall and few-shot accuracy of ``runs`` minus ``refs`` (None where the
    set has no few-shot classes)."""
    pairs = list(zip(runs, refs, strict=True))
    overall = [a["metrics"]["overall"] - b["metrics"]["overall"] for a, b in pairs]
    few = [
        None if a["metrics"]["few"] is None else a["metrics"]["few"] - b["metrics"]["few"]
        for a, b in pairs
    ]
    return overall, few


def _default(out: Path, set_name: str, seed: int, panel: Path) -> dict:
    """The default's record: the newest tree's (``default-futile``, ``default-now``) where
    one is cached, else the cached or new ``default`` (they choose and predict the same
    where both exist: ``--variant default-now``, ``--variant default-futile``)."""
    for name in ("default-futile", "default-now"):
        now = out / set_name / f"{name}-s{seed}.json"
        if now.is_file():
            return json.loads(now.read_text())
    return cached(out, set_name, "default", seed, panel)


def table(
    out: Path,
    sets: list[str],
    seeds: list[int],
    panel: Path,
    paper_seeds: list[int] | None = None,
) -> str:
    """README table: Balanced Softmax, paper preset, default, gains, separation, choices."""
    paper_seeds = [] if paper_seeds is None else paper_seeds
    head = ["Balanced Softmax", f"paper preset (`imagenet-lt`, seeds {paper_seeds})",
            "default", "default - Balanced Softmax", "few-shot gain",
            "DLSA on top: gain over the chosen base alone (seeds)",
            "filter-1 tail share: routed vs all (seed 0)", "default chose (by seed)"]  # fmt: skip
    lines = ["| set | " + " | ".join(head) + " |", "|---|" + "--:|" * (len(head) - 1) + "---|"]
    for s in sets:
        get = {"balsoftmax": [cached(out, s, "balsoftmax", seed, panel) for seed in seeds],
               "default": [_default(out, s, seed, panel) for seed in seeds]}  # fmt: skip
        get["chosen-base"] = [  # the chosen base alone, where the default put DLSA on it
            cached(out, s, "chosen-base", seed, panel) if "DLSA" in (d["chosen"] or "") else None
            for seed, d in zip(seeds, get["default"], strict=True)
        ]
        paper = [cached(out, s, "paper", seed, panel) for seed in paper_seeds]
        gain, few = _paired_gains(get["default"], get["balsoftmax"])
        paper_gain = [
            p["metrics"]["overall"] - get["balsoftmax"][seeds.index(k)]["metrics"]["overall"]
            for p, k in zip(paper, paper_seeds, strict=True)
        ]
        cells = [
            _ms([r["metrics"]["overall"] for r in get["balsoftmax"]]),
            f"{_ms([r['metrics']['overall'] for r in paper])} ({_ms(paper_gain, True)})"
            if paper
            else "not run",
            _ms([r["metrics"]["overall"] for r in get["default"]]),
            f"**{_ms(gain, True)}**",
            _ms(few, True),
            _dlsa_on_top(get["default"], get["chosen-base"]),
            _separation(get["default"][0]),
            "; ".join(r["chosen"] or "-" for r in get["default"]),
        ]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paper_table(
    out: Path, sets: list[str], seeds: list[int], panel: Path, presets: list[str]
) -> str:
    """Release presets against Balanced Softmax alone (paired by seed): overall accuracy,
    the gain overall and on the few-shot classes, and the fit time."""
    head = ["Balanced Softmax"]
    for p in presets:
        head += [f"`{p}`", f"`{p}` - Balanced Softmax", "few-shot", "fit s"]
    lines = ["| set | " + " | ".join(head) + " |", "|---|" + "--:|" * len(head)]
    for s in sets:
        ref = [cached(out, s, "balsoftmax", seed, panel) for seed in seeds]
        cells = [_ms([r["metrics"]["overall"] for r in ref])]
        for p in presets:
            runs = [cached(out, s, f"paper:{p}", seed, panel) for seed in seeds]
            gain, few = _paired_gains(runs, ref)
            cells += [
                _ms([r["metrics"]["overall"] for r in runs]),
                f"**{_ms(gain, True)}**",
                _ms(few, True),
                f"{np.mean([r['seconds'] for r in runs]):.0f}",
            ]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def variant_table(out: Path, sets: list[str], seeds: list[int], panel: Path, name: str) -> str:
    """A candidate change of the default against the default, same sets and seeds: test
    accuracy (paired difference), few-shot difference, and what each chose."""
    lines = [
        f"| set | default | {name} | {name} - default | few | default chose | {name} chose "
        f"| default s | {name} s | time ratio |",
        "|---|--:|--:|--:|--:|---|---|--:|--:|--:|",
    ]
    seconds = [0.0, 0.0]
    for s in sets:
        ref = [cached(out, s, "default", seed, panel) for seed in seeds]
        new = [cached(out, s, name, seed, panel) for seed in seeds]
        diff, few = _paired_gains(new, ref)
        cells = [
            _ms([r["metrics"]["overall"] for r in ref]),
            _ms([r["metrics"]["overall"] for r in new]),
            f"**{_ms(diff, True)}**",
            _ms(few, True),
            "; ".join(r["chosen"] or "-" for r in ref),
            "; ".join(r["chosen"] or "-" for r in new),
        ]
        t_ref, t_new = (sum(r["seconds"] for r in runs) for runs in (ref, new))
        seconds = [seconds[0] + t_ref, seconds[1] + t_new]
        cells += [f"{t_ref:.0f}", f"{t_new:.0f}", f"{t_ref / t_new:.2f}x"]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    total = f"{seconds[0]:.0f} | {seconds[1]:.0f} | {seconds[0] / max(seconds[1], 1e-9):.2f}x"
    lines.append("| all | | | | | | | " + total + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--half", choices=["tune", "report"], required=True)
    parser.add_argument("--panel", default="runs/panel")
    parser.add_argument("--out", default="runs/transfer")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sets", default=None, help="comma-separated subset of the half")
    parser.add_argument("--paper-seeds", default=None, help="seeds of the paper preset")
    parser.add_argument(
        "--variant", default=None, help="compare a candidate change (default-std) to the default"
    )
    parser.add_argument(
        "--release-presets",
        default=None,
        help="comma-separated release presets: only these and Balanced Softmax, per seed",
    )
    args = parser.parse_args()
    sets = list(TUNE if args.half == "tune" else REPORT)
    if args.sets:
        sets = [s for s in sets if s in args.sets.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    paper = None if args.paper_seeds is None else [int(v) for v in args.paper_seeds.split(",")]
    if args.release_presets:
        presets = args.release_presets.split(",")
        print(paper_table(Path(args.out), sets, seeds, Path(args.panel), presets))
        return
    if args.variant:
        print(variant_table(Path(args.out), sets, seeds, Path(args.panel), args.variant))
        return
    print(table(Path(args.out), sets, seeds, Path(args.panel), paper))


if __name__ == "__main__":
    main()
