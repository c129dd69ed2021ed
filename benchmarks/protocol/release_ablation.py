"""The release's procedure with one of dlsa's choices at a time: an
ablation in the layout of the paper's Table 4.

"release" is a release preset (``--preset``, default ``ImgNet_CE_R50_bsm``: the
release's procedure, side by side with the release in docs/presets.md); each following
row switches ONE part of it to dlsa's own choice (the option named in docs/presets.md).
Every model is compared with the base method alone trained with the same classifier
settings (depth 0), on the same test samples, stage by stage; classifier epochs are the
last one (the release picks them by test accuracy; we never do).

Usage::

    OMP_NUM_THREADS=1 python -m benchmarks.protocol.release_ablation --panel runs/panel \
        --sets fm-digits,fm-ce-r100 --seeds 0 --out runs/release-ablation
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dlsa import DLSAClassifier
from dlsa.analysis.evaluation import compare_on_stages, encode_labels, evaluate
from dlsa.config import DLSAConfig, FlowConfig, get_preset
from dlsa.io.features import load_features


def _flt(**kw: object) -> Callable[[DLSAConfig], DLSAConfig]:
    return lambda c: dataclasses.replace(c, flow_filter=dataclasses.replace(c.flow_filter, **kw))


def _cfg(**kw: object) -> Callable[[DLSAConfig], DLSAConfig]:
    return lambda c: dataclasses.replace(c, **kw)


def _ours_head(c: DLSAConfig) -> DLSAConfig:
    return dataclasses.replace(c, head=DLSAConfig().head)


def _ours_made(c: DLSAConfig) -> DLSAConfig:
    return _flt(flow=FlowConfig(hidden_layers=1, zero_init=True, bn_unbiased=False))(c)


CHANGES: dict[str, Callable[[DLSAConfig], DLSAConfig]] = {
    "likelihood: weighted mean per dimension, lambda 1": _flt(
        mle_normalization="weight-sum", mle_per_dimension=True, lambda_mle=1.0
    ),
    "shuffled flow batches": _flt(batch_sampler="shuffle"),
    "purity: B/4 pairs drawn apart, one flow pass": _flt(
        purity_anchors="drawn", purity_pairs=0.25, flow_passes="joint"
    ),
    "MADE: 1 hidden layer, zero init, biased BN": _ours_made,
    "weight cap 5, clip 10": _flt(max_class_share=5.0, grad_clip=10.0),
    "epoch rule: 2nd half, latest, share <= 0.5": _flt(
        selection_start=0.5, epoch_ties="latest", max_cluster_share=0.5, max_cluster_size=None
    ),
    "classifiers: FC[x, z] + FC[P]; regular FC(x)": _cfg(classifier_layout="paper"),
    "unseen classes masked": _cfg(mask_unseen=True),
    "cluster prior of the level's samples": _cfg(cluster_prior_data="level"),
    "classifier optimiser: momentum, wd, cosine, standardised": _ours_head,
}


def variants(preset: str) -> dict[str, DLSAConfig]:
    release = get_preset(preset)
    out = {f"release ({preset})": release}
    for name, change in CHANGES.items():
        out[f"+ {name}"] = change(release)
    return out


def run(cfg: DLSAConfig, train, test, seed: int, components: int | None) -> dict:
    if components:
        mix = dataclasses.replace(cfg.flow_filter.mixture, n_components=components)
        cfg = dataclasses.replace(
            cfg, flow_filter=dataclasses.replace(cfg.flow_filter, mixture=mix)
        )
    cfg = dataclasses.replace(cfg, random_state=seed)
    start = time.perf_counter()
    dlsa = DLSAClassifier(**cfg.estimator_params()).fit(train.X, train.y)
    seconds = time.perf_counter() - start
    base = DLSAClassifier(**(cfg.estimator_params() | {"depth": 0})).fit(train.X, train.y)
    ev_d, ev_b = evaluate(dlsa, test.X, test.y), evaluate(base, test.X, test.y)
    target = encode_labels(dlsa, test.y)
    return {
        "dlsa": ev_d["metrics"],
        "base": ev_b["metrics"],
        "stages": compare_on_stages(ev_d, ev_b, target),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--panel", default="runs/panel")
    parser.add_argument("--sets", default="fm-digits,fm-ce-r100")
    parser.add_argument("--preset", default="ImgNet_CE_R50_bsm")
    parser.add_argument("--components", type=int, default=0, help="K (0: the preset's)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--out", default="runs/release-ablation")
    parser.add_argument("--only", default=None, help="comma-separated variant name prefixes")
    args = parser.parse_args()
    out = Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    for set_name in args.sets.split(","):
        train = load_features(Path(args.panel) / set_name / "train.h5")
        test = load_features(Path(args.panel) / set_name / "test.h5")
        rows = []
        for name, cfg in variants(args.preset).items():
            if args.only and not name.startswith(tuple(args.only.split(","))):
                continue
            recs = []
            for seed in seeds:
                path = out / set_name / f"{name.replace(' ', '_').replace('/', '')}-s{seed}.json"
                if path.is_file():
                    recs.append(json.loads(path.read_text()))
                    continue
                rec = run(cfg, train, test, seed, args.components or None)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(rec, indent=1))
                recs.append(rec)
                print(f"{set_name} {name} s{seed}: {rec['seconds']:.0f}s", flush=True)
            gain = [r["dlsa"]["overall"] - r["base"]["overall"] for r in recs]
            stages = []
            for s in range(cfg.depth + 1):
                g = [
                    next((x["dlsa_accuracy"] - x["base_accuracy"] for x in r["stages"]
                          if x["stage"] == s), np.nan)
                    for r in recs
                ]  # fmt: skip
                stages.append(f"{100 * np.nanmean(g):+.1f}" if not np.all(np.isnan(g)) else "-")
            base = np.mean([r["base"]["overall"] for r in recs])
            rows.append(f"| {name} | {100 * base:.1f} | {100 * np.mean(gain):+.2f} | "
                        + " | ".join(stages) + " |")  # fmt: skip
        depth = get_preset(args.preset).depth
        levels = [f"level {d + 1}" for d in range(depth)]
        print(f"\n{set_name} (seeds {args.seeds}, K = {args.components or 'preset'}):\n")
        print("| variant | base alone | DLSA gain | " + " | ".join(levels) + " | regular |")
        print("|---|--:|--:|" + "--:|" * (depth + 1))
        print("\n".join(rows), flush=True)


if __name__ == "__main__":
    main()
