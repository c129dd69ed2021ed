"""The original release and a dlsa preset side by side, on the same feature files.

Runs a local clone of the original release (github.com/silicx/DLSA; not part of this
project: pass its folder) and the matching dlsa preset on the same train / test features,
then prints, per level, what each one did: the routed share of the level's train and test
samples, the share of few-shot classes (< 20 training samples) among the routed training
samples, the accuracy of the cluster-aided classifier on its test samples and of the
regular classifier on its own, overall and few-shot accuracy, the flow epoch kept and
the epoch-1 loss terms (lambda-weighted per-step means, as the release logs them).

The release is run on a copy of the clone with the edits any user needs to start it, and
one for the comparison (nothing else of its code changes):

* ``utils/io.py`` reads ``config/cls/BaseConfig.yaml``, which does not exist: the copy
  reads ``config/BaseConfig.yaml``;
* its ``num_class`` table knows three data sets: the copy adds each set's class count;
* it keeps the classifier epoch with the best test accuracy: the copy evaluates once,
  after the last epoch (``eval_freq`` = epochs), and keeps it (``>=`` for ``>``), as
  dlsa does;
* it is run with ``device: cpu``, ``num_workers: 0``, no backbone checkpoint, and the
  Python, NumPy and torch seeds set to the run's seed (the release seeds nothing).

What it did is read from its log (loss sums per epoch, the epoch kept) and from its own
functions' arguments and results, recorded by a small driver that wraps them.

Usage::

    OMP_NUM_THREADS=1 python -m benchmarks.protocol.release_side_by_side --release ~/src/DLSA \\
        --set parity=feat:ImgNet_CE_R50_bsm \\
        --set fm-ce-r100=runs/panel/fm-ce-r100:ImgNet_CE_R50_bsm \\
        --seeds 0,1,2 --out runs/release-parity --jobs 2

A set is ``NAME=FOLDER:PRESET``; FOLDER holds ``train.h5`` and ``test.h5`` (dlsa's
layout) or ``feature_train.h5`` and ``feature_test.h5`` (the release's). Runs are cached
as JSON in ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

DRIVER = r"""
import json, os, random, sys
import numpy as np, torch
seed, cfg, name, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
random.seed(seed); np.random.seed(seed); torch.manual_seed(seed)
sys.argv = ["train_dlsa.py", "--cfg", cfg, "--name", name, "--force"]
import train_dlsa as T
rec = {"levels": [], "ca_pred": [], "reg_pred": [], "final": None}
divide, ca_eval, reg_eval, dac = (T.divide_samples, T.eval_cluster_aided_classifier,
                                  T.eval_regular_classifier, T.divide_and_conquer)
def divide_samples(*a, **k):
    classify, labelmap, prior = divide(*a, **k)
    rec["levels"].append({s: np.asarray(classify[s]).tolist() for s in ("train", "test")})
    return classify, labelmap, prior
def full(loader):
    return len(loader.dataset) == n_test
def eval_ca(model, args, loader):
    out_ = ca_eval(model, args, loader)
    if full(loader): rec["ca_pred"].append(out_[0].tolist())
    return out_
def eval_reg(model, args, loader):
    out_ = reg_eval(model, args, loader)
    if full(loader): rec["reg_pred"].append(out_[0].tolist())
    return out_
def divide_and_conquer(*a, **k):
    pred = dac(*a, **k)
    if k.get("rec_depth", 1) == 1: rec["final"] = np.asarray(pred).tolist()
    return pred
n_test = int(os.environ["PARITY_N_TEST"])
T.divide_samples, T.eval_cluster_aided_classifier = divide_samples, eval_ca
T.eval_regular_classifier, T.divide_and_conquer = eval_reg, divide_and_conquer
T.main()
json.dump(rec, open(out, "w"))
"""

FEW = 20
"""Few-shot classes have fewer training samples (the release's ``shot_acc``)."""


def release_copy(release: Path, out: Path, classes: dict[str, int]) -> Path:
    """A copy of the release in ``out`` with the edits of the module docstring (one copy
    per class-count table, kept: runs of other invocations may be using it)."""
    tag = hashlib.sha1(json.dumps(classes, sort_keys=True).encode()).hexdigest()[:8]
    dest = out / f"release-{tag}"
    if (dest / "parity_driver.py").is_file():
        return dest
    tmp = out / f".release-{tag}-{os.getpid()}"
    shutil.copytree(release, tmp, ignore=shutil.ignore_patterns(".git"))
    edits = {
        "utils/io.py": [
            ("config/cls/BaseConfig.yaml", "config/BaseConfig.yaml"),
            ('"iNaturalist":  8142,', '"iNaturalist":  8142, ' + json.dumps(classes)[1:-1] + ","),
        ],
        "solvers/regular_classifier.py": [("mean_acc > best_acc", "mean_acc >= best_acc")],
        "solvers/cluster_aided_classifier.py": [("mean_acc > best_acc", "mean_acc >= best_acc")],
    }
    for rel, pairs in edits.items():
        text = (tmp / rel).read_text()
        for old, new in pairs:
            if old not in text:
                raise SystemExit(f"{release}/{rel}: cannot find {old!r}; another release?")
            text = text.replace(old, new)
        (tmp / rel).write_text(text)
    (tmp / "parity_driver.py").write_text(DRIVER)
    tmp.rename(dest)
    return dest


def load_set(folder: Path) -> tuple[np.ndarray, ...]:
    """Train and test features and labels of a set folder (either layout)."""
    import h5py

    names = ("train.h5", "test.h5")
    if not (folder / names[0]).is_file():
        names = ("feature_train.h5", "feature_test.h5")
    out = []
    for name in names:
        with h5py.File(folder / name, "r") as f:
            out += [f["features"][...].astype(np.float32), f["labels"][...].astype(np.int64)]
    return tuple(out)


def release_config(release: Path, preset: str, feat: Path, dataset: str, run: Path) -> Path:
    """The release's config file for ``preset`` with the run's data, CPU and epoch edits."""
    import yaml

    cfg = yaml.safe_load((release / "config" / f"{preset}.yaml").read_text())
    cfg.update(dataset=dataset, feat_dir=str(feat), device="cpu", backbone_weight_path=None)
    cfg["root_dir"] = str(run / "logs")
    cfg["gmflow"]["data"]["num_workers"] = 0
    for part in ("cacls", "regcls"):
        cfg[part]["eval_freq"] = cfg[part]["optim"]["epoch"]
        cfg[part].setdefault("data", {})["num_workers"] = 0
    path = run / "release.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_release(copy: Path, preset: str, folder: Path, seed: int, run: Path) -> dict:
    """Run the release once; its stats (see :func:`stats`) plus its logged loss terms."""
    xtr, ytr, xte, yte = load_set(folder)
    feat = run / "feat"
    feat.mkdir(parents=True, exist_ok=True)
    import h5py

    for split, x, y in (("train", xtr, ytr), ("test", xte, yte)):
        with h5py.File(feat / f"feature_{split}.h5", "w") as f:
            f["features"], f["labels"] = x, y
    dataset = f"parity{len(np.unique(ytr))}"
    cfg = release_config(copy, preset, feat, dataset, run)
    env = dict(os.environ, PARITY_N_TEST=str(len(yte)), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "parity_driver.py", str(seed), str(cfg), "run", str(run / "rec.json")]
    with open(run / "release.log", "w") as log:
        code = subprocess.call(cmd, cwd=copy, env=env, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        raise SystemExit(f"the release failed (exit {code}); see {run / 'release.log'}")
    rec = json.loads((run / "rec.json").read_text())
    import yaml

    flow = yaml.safe_load(cfg.read_text())["gmflow"]
    routed_train, routed_test, mask_tr, mask_te = [], [], np.ones_like(ytr, bool), None
    mask_te = np.ones_like(yte, bool)
    for level in rec["levels"]:
        classify_tr, classify_te = np.array(level["train"]), np.array(level["test"])
        routed_train.append(~classify_tr & mask_tr)
        routed_test.append(~classify_te & mask_te)
        mask_tr, mask_te = classify_tr & mask_tr, classify_te & mask_te
    log = (run / "release.log").read_text()
    sums = [
        dict(re.findall(r"(log_lh|purity|balance) (-?[\d.]+)", m))
        for m in re.findall(r"loss: (.*)", log)
    ]
    kept = [int(e) for e in re.findall(r"\(best -?\d+ at epoch (\d+)", log)]
    epochs = flow["optim"]["epoch"]
    out = stats(
        ytr,
        yte,
        routed_train,
        routed_test,
        [np.array(p) for p in rec["ca_pred"]],
        np.array(rec["reg_pred"][-1]),
        np.array(rec["final"]),
    )
    for d, level in enumerate(out["levels"]):
        steps = math.ceil(level["n_train"] / flow["data"]["batchsize"])
        level["terms"] = {k: float(v) / steps for k, v in sums[d * epochs].items()}
        level["epoch_kept"] = kept[(d + 1) * epochs - 1]
    return out


def run_dlsa(preset: str, folder: Path, seed: int) -> dict:
    """Fit the dlsa preset once; its stats."""
    from dlsa import DLSAClassifier
    from dlsa.config import get_preset

    xtr, ytr, xte, yte = load_set(folder)
    cfg = dataclasses.replace(get_preset(preset), random_state=seed)
    clf = DLSAClassifier(**cfg.estimator_params()).fit(xtr, ytr)
    stage_tr, stage_te = clf.route(xtr), clf.route(xte)
    depth = len(clf.filters_)
    pred = clf.predict(xte)
    out = stats(
        ytr,
        yte,
        [stage_tr == d for d in range(depth)],
        [stage_te == d for d in range(depth)],
        [pred] * depth,
        pred,
        pred,
    )
    for level, report in zip(out["levels"], clf.reports_, strict=True):
        level["terms"] = report["filter"]["terms"][0]
        level["epoch_kept"] = report["filter"]["selected_epoch"]
    return out


def stats(ytr, yte, routed_train, routed_test, ca_pred, reg_pred, final) -> dict:
    """Per level and overall numbers of one run (see the module docstring)."""
    counts = np.bincount(ytr, minlength=int(yte.max()) + 1)
    few = counts < FEW
    levels, left_tr, left_te = [], np.ones_like(ytr, bool), np.ones_like(yte, bool)
    for d, (rtr, rte) in enumerate(zip(routed_train, routed_test, strict=True)):
        levels.append(
            {
                "n_train": int(left_tr.sum()),
                "routed_train": float(rtr.sum() / max(left_tr.sum(), 1)),
                "routed_test": float(rte.sum() / max(left_te.sum(), 1)),
                "few_share_routed": float(few[ytr[rtr]].mean()) if rtr.any() else None,
                "ca_acc": float((ca_pred[d][rte] == yte[rte]).mean()) if rte.any() else None,
                "ca_n": int(rte.sum()),
            }
        )
        left_tr, left_te = left_tr & ~rtr, left_te & ~rte
    per_class = np.array([(final[yte == c] == c).mean() for c in np.unique(yte)])
    return {
        "levels": levels,
        "regular_acc": float((reg_pred[left_te] == yte[left_te]).mean()),
        "regular_n": int(left_te.sum()),
        "overall": float((final == yte).mean()),
        "few": float(per_class[few[np.unique(yte)]].mean()) if few.any() else None,
    }


def mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def table(name: str, preset: str, runs: dict[str, list[dict]]) -> str:
    """Markdown rows of one set: each side's mean over seeds."""
    rows = []
    depth = len(runs["release"][0]["levels"])
    for side in ("release", "dlsa"):
        rs = runs[side]
        cells = []
        for d in range(depth):
            lv = [r["levels"][d] for r in rs]
            cells.append(
                "L{}: {:.1f} / {:.1f}, few {:.1f}, CA {:.1f}, ep {}".format(
                    d + 1,
                    100 * mean([x["routed_train"] for x in lv]),
                    100 * mean([x["routed_test"] for x in lv]),
                    100 * (mean([x["few_share_routed"] for x in lv]) or 0.0),
                    100 * (mean([x["ca_acc"] for x in lv]) or 0.0),
                    "/".join(str(x["epoch_kept"]) for x in lv),
                )
            )
        terms = [r["levels"][0]["terms"] for r in rs]
        rows.append(
            f"| {name} | {preset} | {side} | " + "<br>".join(cells) + " | "
            f"{100 * mean([r['regular_acc'] for r in rs]):.1f} | "
            f"{100 * mean([r['overall'] for r in rs]):.2f} | "
            f"{100 * (mean([r['few'] for r in rs]) or 0.0):.1f} | "
            f"{mean([t['log_lh'] for t in terms]):.3f} / {mean([t['purity'] for t in terms]):.3f}"
            f" / {mean([t['balance'] for t in terms]):.4f} |"
        )
    return "\n".join(rows)


HEADER = (
    "| set | preset | side | per level: routed % train / test, few-shot % of routed train, "
    "cluster-aided acc on its test samples, flow epoch kept (per seed) | regular acc | "
    "overall | few | epoch 1 log_lh / purity / balance |\n|---|---|---|---|--:|--:|--:|---|"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--release", type=Path, required=True, help="a clone of silicx/DLSA")
    parser.add_argument("--set", action="append", required=True, help="NAME=FOLDER:PRESET")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=Path("runs/release-parity"))
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    sets = {}
    for spec in args.set:
        name, rest = spec.split("=", 1)
        folder, preset = rest.rsplit(":", 1)
        sets[name] = (Path(folder).resolve(), preset)
    seeds = [int(s) for s in args.seeds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    classes = {}
    for folder, _ in sets.values():
        y = load_set(folder)[1]
        classes[f"parity{len(np.unique(y))}"] = int(y.max()) + 1
    copy = release_copy(args.release.resolve(), args.out.resolve(), classes)
    jobs = [(n, side, s) for n in sets for s in seeds for side in ("release", "dlsa")]

    def one(name: str, side: str, seed: int) -> dict:
        cache = args.out / name / f"{side}-seed{seed}.json"
        if cache.is_file():
            return json.loads(cache.read_text())
        folder, preset = sets[name]
        run = (args.out / name / f"{side}-seed{seed}").resolve()
        run.mkdir(parents=True, exist_ok=True)
        if side == "release":
            result = run_release(copy, preset, folder, seed, run)
        else:
            result = run_dlsa(preset, folder, seed)
        cache.write_text(json.dumps(result, indent=1))
        print(f"{name} {side} seed {seed}: overall {100 * result['overall']:.2f}", flush=True)
        return result

    from joblib import Parallel, delayed

    results = Parallel(n_jobs=args.jobs)(delayed(one)(*job) for job in jobs)
    by = {}
    for (name, side, _), result in zip(jobs, results, strict=True):
        by.setdefault(name, {}).setdefault(side, []).append(result)
    print(HEADER)
    for name, (_, preset) in sets.items():
        print(table(name, preset, by[name]))


if __name__ == "__main__":
    main()
