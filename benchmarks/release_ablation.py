"""Issue 14: the paper preset before and after matching the original release, one
difference at a time (an ablation in the layout of the paper's Table 4).

"before" is the paper preset of the release before issue 14 (our training choices
everywhere); each following row switches ONE difference to the original release's
behaviour; "after" is the ``ImgNet_CE_R50_bsm`` preset (the release's procedure since
issue 20) at depth 3, with the classifier lr 0.01 of its CE / CBS configs. Every model
is compared with Balanced Softmax alone trained with the same classifier settings, on the same test
samples, stage by stage; classifier epochs are the last one (the original picks them by
test accuracy; we never do).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/release_ablation.py --panel runs/panel \\
        --sets fm-ce-r100,fm-ce-r500 --components 30 --seeds 0 --out runs/release-ablation
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
from dlsa.config import DLSAConfig, FilterConfig, HeadConfig, get_preset
from dlsa.evaluation import compare_on_stages, encode_labels, evaluate
from dlsa.features import load_features

AFTER = dataclasses.replace(get_preset("ImgNet_CE_R50_bsm"), depth=3)
RELEASE_HEAD = AFTER.head


def before() -> DLSAConfig:
    """The paper preset of the previous release."""
    return DLSAConfig(
        depth=3,
        base="balsoftmax",
        flow_filter=FilterConfig(),
        head=HeadConfig(),
        selection=None,
        regular_data="remaining",
        cover_classes=False,
        residual=False,
        stage_prior="routed",
    )


def _flt(**kw: object) -> Callable[[DLSAConfig], DLSAConfig]:
    return lambda c: dataclasses.replace(c, flow_filter=dataclasses.replace(c.flow_filter, **kw))


def _flow(**kw: object) -> Callable[[DLSAConfig], DLSAConfig]:
    def apply(c: DLSAConfig) -> DLSAConfig:
        flow = dataclasses.replace(c.flow_filter.flow, **kw)
        return dataclasses.replace(c, flow_filter=dataclasses.replace(c.flow_filter, flow=flow))

    return apply


def _head(**kw: object) -> Callable[[DLSAConfig], DLSAConfig]:
    return lambda c: dataclasses.replace(c, head=dataclasses.replace(c.head, **kw))


CHANGES: dict[str, Callable[[DLSAConfig], DLSAConfig]] = {
    "1 regular prior: global counts": lambda c: dataclasses.replace(c, regular_prior="global"),
    "2 class-balanced flow batches": _flt(batch_sampler="class-balanced"),
    "3 MLE x2, not per dimension": _flt(lambda_mle=2.0, mle_per_dimension=False),
    "4 MADE: 2 hidden layers, default init": _flow(hidden_layers=2, zero_init=False),
    "5 raw classifier inputs": _head(standardize=False),
    "6 release classifier optimiser": _head(
        epochs=150, batch_size=128, lr=0.01, momentum=0.0, weight_decay=0.0, schedule="constant"
    ),
    "9 cluster-aided regular classifier": lambda c: dataclasses.replace(
        c, regular_cluster_aided=True
    ),
    "10 purity pairs = B": _flt(purity_pairs=1.0),
    "11 unbiased BN variance": _flow(bn_unbiased=True),
    "12 earliest epoch on ties": _flt(epoch_ties="earliest"),
}


def variants() -> dict[str, DLSAConfig]:
    out = {"before (previous preset)": before()}
    for name, change in CHANGES.items():
        out[f"before + {name}"] = change(before())
    out["after (ImgNet_CE_R50_bsm, depth 3)"] = AFTER
    out["after + 8 cluster prior of the level's own samples"] = dataclasses.replace(
        AFTER, cluster_prior_data="level"
    )
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
    parser.add_argument("--sets", default="fm-ce-r100,fm-ce-r500")
    parser.add_argument("--components", type=int, default=30, help="K (0: the preset's)")
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
        for name, cfg in variants().items():
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
            for s in range(4):
                g = [
                    next((x["dlsa_accuracy"] - x["base_accuracy"] for x in r["stages"]
                          if x["stage"] == s), np.nan)
                    for r in recs
                ]  # fmt: skip
                stages.append(f"{100 * np.nanmean(g):+.1f}" if not np.all(np.isnan(g)) else "-")
            base = np.mean([r["base"]["overall"] for r in recs])
            rows.append(f"| {name} | {100 * base:.1f} | {100 * np.mean(gain):+.2f} | "
                        + " | ".join(stages) + " |")  # fmt: skip
        print(f"\n{set_name} (seeds {args.seeds}, K = {args.components or 'preset'}):\n")
        print("| variant | base alone | DLSA gain | level 1 | level 2 | level 3 | regular |")
        print("|---|--:|--:|--:|--:|--:|--:|")
        print("\n".join(rows), flush=True)


if __name__ == "__main__":
    main()
