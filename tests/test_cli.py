"""CLI smoke tests on tiny synthetic feature files, and its error paths."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from dlsa.cli import build_parser, config_fields, main, resolve_config
from dlsa.datasets.synthetic import make_long_tailed_features
from dlsa.io.features import load_features, save_features
from dlsa.io.file_map import read_file_map

TINY = [
    "--config", "small",
    "--depth", "1",
    "--flow-filter.mixture.n-components", "8",
    "--flow-filter.epochs", "2",
    "--head.epochs", "3",
]  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = make_long_tailed_features(n_classes=8, n_features=6, n_max=80, imbalance=20, seed=0)
    root = tmp_path_factory.mktemp("feat")
    save_features(root / "train.h5", d.X_train, d.y_train, split="train")
    save_features(root / "test.npz", d.X_test, d.y_test, split="test")
    save_features(root / "unlabelled.npz", d.X_test[:7])
    return root


@pytest.fixture(scope="module")
def run(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    argv = ["-q", "fit", "--train", str(files / "train.h5"), "--test", str(files / "test.npz")]
    assert main([*argv, "--out", str(out), *TINY]) == 0
    return out


def test_fit_writes_models_results_and_report(run, capsys):
    assert sorted(p.name for p in run.iterdir()) == [
        ".dlsa-output.json",
        "base_model",
        "model",
        "per_class.csv",
        "report.md",
        "results.json",
    ]
    results = json.loads((run / "results.json").read_text())
    assert results["config"]["depth"] == 1 and results["config"]["flow_filter"]["epochs"] == 2
    assert results["seed"] == 0 and "git_commit" in results
    for key in ("overall", "many", "medium", "few", "mcc", "nmi"):
        assert key in results["base"]["metrics"] and key in results["dlsa"]["metrics"]
    report = (run / "report.md").read_text()
    assert "balsoftmax + DLSA" in report and "| balsoftmax |" in report
    assert results["validation"]["n_folds"] == 2  # the small preset's safeguard
    assert "## Safeguard" in report and "2 folds" in report
    kept = ["yes" if r["kept"] else "no: base method" for r in results["validation"]["stages"]]
    safeguard = report.split("## Safeguard")[1].splitlines()
    rows = [line for line in safeguard if line.startswith(("| cluster-aided", "| regular"))]
    assert [line.rsplit("|", 2)[1].strip() for line in rows] == kept


def test_evaluate_and_predict(run, files, tmp_path, capsys):
    assert main(["evaluate", "--model", str(run / "model"), "--features", str(files / "test.npz"),
                 "--out", str(tmp_path / "m.json")]) == 0  # fmt: skip
    saved = json.loads((run / "results.json").read_text())["dlsa"]["metrics"]
    again = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert again["overall"] == pytest.approx(saved["overall"])
    out = tmp_path / "pred.npz"
    assert main(["predict", "--model", str(run / "model"), "--features",
                 str(files / "unlabelled.npz"), "--out", str(out)]) == 0  # fmt: skip
    with np.load(out) as data:
        assert data["pred"].shape == (7,) and data["proba"].shape == (7, 8)
    csv = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(run / "model"), "--features",
                 str(files / "unlabelled.npz"), "--out", str(csv)]) == 0  # fmt: skip
    assert csv.read_text().splitlines()[0] == "index,pred,confidence,stage"


def test_refuses_to_overwrite_without_flag(run, files, capsys):
    argv = ["-q", "fit", "--train", str(files / "train.h5"), "--test", str(files / "test.npz")]
    assert main([*argv, "--out", str(run), *TINY]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_bad_files_give_one_line_errors_and_leave_nothing(files, tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    out = tmp_path / "out"
    code = main(
        ["-q", "fit", "--train", str(bad), "--test", str(files / "test.npz"), "--out", str(out)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "bad.h5" in err and "cannot read" in err
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_dimension_mismatch_between_train_and_test(files, tmp_path, capsys):
    d = load_features(files / "test.npz")
    save_features(tmp_path / "narrow.npz", d.X[:, :3], d.y)
    code = main(["-q", "fit", "--train", str(files / "train.h5"), "--test",
                 str(tmp_path / "narrow.npz"), "--out", str(tmp_path / "o")])  # fmt: skip
    assert code == 2 and "3 features" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_failed_fit_is_one_line_and_leaves_no_output(files, tmp_path, capsys):
    argv = ["-q", "fit", "--train", str(files / "train.h5"), "--test", str(files / "test.npz")]
    flags = ["--out", str(tmp_path / "o"), "--flow-filter.mixture.n-components", "900"]
    assert main([*argv, *flags, "--config", "small"]) == 2
    err = _without_progress(capsys.readouterr().err).strip()
    assert len(err.splitlines()) == 1 and "K=900" in err and "train.h5" in err
    assert list(tmp_path.iterdir()) == []


def test_every_config_field_has_a_flag_with_help():
    parser = build_parser()
    fit = parser._subparsers._group_actions[0].choices["fit"]  # noqa: SLF001
    flags = {a.dest: a for a in fit._actions}  # noqa: SLF001
    for path, _, _, doc in config_fields():
        assert f"cfg:{path}" in flags, path
        assert doc, f"{path} has no docstring"


def test_yaml_config_and_overrides(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("depth: 2\nflow_filter:\n  lr: 0.3\n")
    argv = ["fit", "--train", "a", "--test", "b", "--out", "c", "--config", str(cfg)]
    args = build_parser().parse_args([*argv, "--flow-filter.epochs", "7"])
    config = resolve_config(args)
    assert (config.depth, config.flow_filter.lr, config.flow_filter.epochs) == (2, 0.3, 7)


def test_yaml_with_unknown_key_is_rejected(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("flow_filter:\n  lrr: 0.3\n")
    code = main(
        ["fit", "--train", "a", "--test", "b", "--out", str(tmp_path / "o"), "--config", str(cfg)]
    )
    assert code == 2 and "lrr" in capsys.readouterr().err


def test_compare_writes_a_table_per_base(files, tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["-q", "compare", "--train", str(files / "train.h5"), "--test", str(files / "test.npz"),
            "--bases", "balsoftmax,ce", "--seeds", "0,1", "--out", str(out), *TINY]  # fmt: skip
    assert main(argv) == 0
    text = (out / "comparison.md").read_text()
    assert "ce + DLSA" in text and "balsoftmax + DLSA" in text and "±" in text
    record = json.loads((out / "comparison.json").read_text())
    assert record["seeds"] == [0, 1] and record["bases"] == ["balsoftmax", "ce"]


def test_compare_rejects_an_unknown_base(files, tmp_path, capsys):
    argv = ["-q", "compare", "--train", str(files / "train.h5"), "--test", str(files / "test.npz"),
            "--bases", "nope", "--out", str(tmp_path / "c"), *TINY]  # fmt: skip
    assert main(argv) == 2
    assert "nope" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_figures_are_written_as_png(run, files, tmp_path):
    out = tmp_path / "fig"
    argv = ["figures", "--model", str(run / "model"), "--base-model", str(run / "base_model"),
            "--features", str(files / "test.npz"), "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    names = sorted(p.name for p in out.iterdir() if p.name != ".dlsa-output.json")
    expected = ["confusion.png", "confusion_difference.png", "cluster_sizes.png",
                "cluster_purity.png", "separation.png", "cascade_tsne.png",
                "per_class_accuracy.png", "reliability.png"]  # fmt: skip
    assert names == sorted(expected)
    assert all((out / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names)


def test_extract_then_predict_on_new_images(tmp_path, capsys):
    """New image files -> features with a saved backbone -> predictions of a saved model."""
    import torch
    from PIL import Image

    from dlsa import DLSAClassifier
    from dlsa.backbones import ResNet, save_checkpoint
    from dlsa.config import FilterConfig, HeadConfig, MixtureConfig

    backbone = ResNet(in_channels=1, n_classes=3, generator=torch.Generator().manual_seed(0))
    save_checkpoint(backbone, tmp_path / "backbone", metadata={"image_size": 28})
    images = tmp_path / "new"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(images / f"{i}.png")
    feats = tmp_path / "new.h5"
    assert main(["-q", "extract", "--backbone", str(tmp_path / "backbone"),
                 "--images", str(images), "--out", str(feats)]) == 0  # fmt: skip
    X = load_features(feats, require_labels=False).X
    assert X.shape == (4, backbone.feature_dim)
    assert read_file_map(tmp_path / "new.h5.files.csv")[0].endswith("0.png")
    d = make_long_tailed_features(n_classes=4, n_features=X.shape[1], n_max=60, imbalance=5)
    flt = FilterConfig(mixture=MixtureConfig(4), epochs=1, batch_size=64)
    model = DLSAClassifier(
        depth=1, flow_filter=flt, head=HeadConfig(epochs=1), base="ce", selection=None
    )
    model.fit(d.X_train, d.y_train).save(tmp_path / "model")
    assert main(["predict", "--model", str(tmp_path / "model"), "--features", str(feats),
                 "--out", str(tmp_path / "pred.csv")]) == 0  # fmt: skip
    assert len((tmp_path / "pred.csv").read_text().splitlines()) == 5


def test_extract_needs_images(tmp_path, capsys):
    from dlsa.backbones import ResNet, save_checkpoint

    save_checkpoint(
        ResNet(in_channels=1, n_classes=2), tmp_path / "b", metadata={"image_size": 28}
    )
    (tmp_path / "empty").mkdir()
    code = main(["extract", "--backbone", str(tmp_path / "b"), "--images", str(tmp_path / "empty"),
                 "--out", str(tmp_path / "f.h5")])  # fmt: skip
    assert code == 2 and "no image files" in capsys.readouterr().err


DEFAULT_TINY = [
    "--selection.bases", "balsoftmax,ce,tau-norm",
    "--selection.folds", "2",
    "--selection.tau-grid", "1.0",
    "--selection.proportions", "0.3,0.99",
    "--flow-filter.epochs", "2",
    "--head.epochs", "3",
]  # fmt: skip


def test_fit_with_the_default_config_selects_and_reports_the_evidence(files, tmp_path):
    out = tmp_path / "default"
    argv = ["-q", "fit", "--train", str(files / "train.h5"), "--test", str(files / "test.npz")]
    assert main([*argv, "--out", str(out), *DEFAULT_TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["base"] == "auto" and results["reference"] == "balsoftmax"
    rounds = results["selection"]["rounds"]
    names = [c["name"] for c in rounds[0]["candidates"]]
    assert names == ["balsoftmax", "ce", "tau-norm (tau=1)"]
    assert len(rounds[1]["candidates"]) == 3  # the base alone, 30% routed, no routing
    report = (out / "report.md").read_text()
    assert "## Selection" in report and f"Chosen: **{results['chosen']}**" in report
    assert "why: " in report


def test_diagnose_prints_filters_gain_and_a_verdict(files, tmp_path, capsys):
    out = tmp_path / "diag.json"
    argv = ["-q", "diagnose", "--train", str(files / "train.h5"), "--out", str(out)]
    assert main([*argv, "--flow-filter.mixture.n-components", "8", *DEFAULT_TINY]) == 0
    text = capsys.readouterr().out
    assert "| filter 1 |" in text and "**Verdict:** DLSA is" in text
    saved = json.loads(out.read_text())
    assert saved["reference"] == "balsoftmax" and isinstance(saved["helps"], bool)
    assert saved["filters"][0]["n_routed"] > 0


def test_no_selection_needs_a_concrete_base(files, tmp_path, capsys):
    argv = ["fit", "--train", str(files / "train.h5"), "--test", str(files / "test.npz")]
    assert main([*argv, "--out", str(tmp_path / "x"), "--no-selection", *TINY[2:]]) == 2
    assert "auto" in capsys.readouterr().err


# ------------------------------------------------------------ user errors (issue 12)
def _without_progress(err: str) -> str:
    """stderr less the progress lines (``dlsa: ...``) of the work done before an error."""
    return "".join(line for line in err.splitlines(True) if not line.startswith("dlsa: "))


def _one_line_error(capsys, command: str, *needles: str) -> str:
    err = _without_progress(capsys.readouterr().err)
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"dlsa {command}: error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_a_class_of_one_sample_is_learned(files, tmp_path):
    from dlsa.estimator import DLSAClassifier

    d = load_features(files / "train.h5")
    x_new = d.X[:1] + 5.0  # a class of one sample, far from the others
    save_features(tmp_path / "one.h5", np.vstack([d.X, x_new]), np.append(d.y, 99))
    argv = ["-q", "fit", "--train", str(tmp_path / "one.h5"), "--test", str(files / "test.npz")]
    assert main([*argv, "--out", str(tmp_path / "o"), *TINY]) == 0
    model = DLSAClassifier.load(tmp_path / "o" / "model")
    assert model.classes_[-1] == 99 and model.class_counts_[-1] == 1
    with pytest.raises(ValueError, match=r"99 \(1 sample\); DLSA needs at least 2"):
        DLSAClassifier(depth=0, base="balsoftmax", selection=None).fit(
            np.vstack([d.X, x_new]), np.append(d.y, 99), min_class_samples=2
        )


@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (["--flow-filter.mixture.n-components", "5000"], ["train.h5", "K=5000"]),
        (["--base", "nope"], ["config: base", "'nope'"]),
        (["--selection.bases", "balsoftmax,nope"], ["selection.bases", "'nope'"]),
        (["--depth", "two"], ["--depth", "'two'"]),
        (["--depth", "-1"], ["config: depth", "-1"]),
        (["--n-jobs", "0"], ["config: n_jobs", "0"]),
        (["--validation-fraction", "0.7"], ["config: validation_fraction", "0.7"]),
        (["--routed-share", "1.5"], ["config: routed_share", "1.5"]),
        (["--flow-filter.proportion", "1.5"], ["config: routed_share", "1.5"]),  # old name
    ],
)
def test_bad_values_are_one_line(files, tmp_path, capsys, flags, needles):
    argv = ["fit", "--train", str(files / "train.h5"), "--test", str(files / "test.npz")]
    code = main([*argv, "--out", str(tmp_path / "o"), *TINY, *flags])
    assert code == 2
    _one_line_error(capsys, "fit", *needles)
    assert list(tmp_path.iterdir()) == []


def _damaged_copy(run, tmp_path, damage) -> str:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(run / "model", model)
    damage(model)
    return str(model)


def _overwrite_middle(model):
    path = model / "model.safetensors"
    with open(path, "r+b") as fh:
        fh.seek(path.stat().st_size // 2)
        fh.write(b"\xff" * 64)


def _truncate(model):
    path = model / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _edit_json(model, lambda m: m.pop("checksums"))  # as a folder of the previous version


def _edit_json(model, edit):
    meta = json.loads((model / "model.json").read_text())
    edit(meta)
    (model / "model.json").write_text(json.dumps(meta))


def _nan_weights(model):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(model / "model.safetensors"))
    name = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[name] = tensors[name].clone().fill_(float("nan"))
    save_file(tensors, str(model / "model.safetensors"))
    _edit_json(model, lambda m: m.pop("checksums"))


@pytest.mark.parametrize(
    ("damage", "needles"),
    [
        (_overwrite_middle, ["model.safetensors: damaged"]),
        (_truncate, ["model.safetensors: not a readable safetensors file"]),
        (lambda m: _edit_json(m, lambda d: d.update(n_features_in=7)), ["size mismatch"]),
        (_nan_weights, ["non-finite"]),
    ],
    ids=["64-bytes-overwritten", "truncated", "json-shapes-edited", "nan-weights"],
)
def test_damaged_model_is_refused_in_one_line(run, files, tmp_path, capsys, damage, needles):
    model = _damaged_copy(run, tmp_path, damage)
    out = tmp_path / "pred.csv"
    argv = ["predict", "--model", model, "--features", str(files / "test.npz"), "--out", str(out)]
    assert main(argv) == 2
    _one_line_error(capsys, "predict", "--model", *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_model_without_checksums_still_loads(run, tmp_path):
    from dlsa import DLSAClassifier

    model = _damaged_copy(run, tmp_path, lambda m: _edit_json(m, lambda d: d.pop("checksums")))
    assert DLSAClassifier.load(model).n_features_in_ == 6


def test_debug_shows_the_traceback_of_a_user_error(tmp_path, capsys):
    argv = ["fit", "--train", str(tmp_path / "x.h5"), "--test", "y.h5", "--out", "o"]
    assert main([*argv, "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("dlsa fit: error:")


# ------------------------------------------------------------------ text labels
@pytest.mark.parametrize("suffix", [".h5", ".npz"])
def test_text_labels_fit_and_predict_to_csv(files, tmp_path, suffix):
    names = np.array(["cat", "dog", "emu", "gnu", "owl, tawny", "yak", "ant", "bee"])
    train, test = load_features(files / "train.h5"), load_features(files / "test.npz")
    save_features(tmp_path / f"train{suffix}", train.X, names[train.y].astype(bytes))
    save_features(tmp_path / f"test{suffix}", test.X, names[test.y])
    argv = ["-q", "fit", "--train", str(tmp_path / f"train{suffix}"),
            "--test", str(tmp_path / f"test{suffix}"), "--out", str(tmp_path / "run")]  # fmt: skip
    assert main([*argv, *TINY]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert sorted(results["classes"]) == sorted(names.tolist())
    assert "cat (" in (tmp_path / "run" / "report.md").read_text()
    out = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(tmp_path / "run" / "model"),
                 "--features", str(files / "unlabelled.npz"), "--out", str(out)]) == 0  # fmt: skip
    import csv

    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 7 and {r["pred"] for r in rows} <= set(names.tolist())
    save_features(tmp_path / "int.npz", test.X, test.y)
    assert main(["evaluate", "--model", str(tmp_path / "run" / "model"),
                 "--features", str(tmp_path / "int.npz")]) == 2  # fmt: skip


# ------------------------------------------------------------- debris and logs
def _dlsa(*argv: str, **kw):
    import subprocess
    import sys

    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "dlsa.cli", *argv], env=env, **kw)


def test_killed_fit_leaves_debris_that_the_next_run_removes(files, tmp_path):
    """kill -9 mid-fit leaves only a hidden temporary; the next run into the same place
    removes it, and its redirected log holds debug lines but no progress-bar frames."""
    import signal
    import subprocess
    import time

    out = tmp_path / "killed"
    argv = ["fit", "--train", str(files / "train.h5"), "--test", str(files / "test.npz"),
            "--out", str(out), *TINY]  # fmt: skip
    proc = _dlsa(*argv, "--head.epochs", "2000", stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".killed.dlsa-tmp.*")) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and len(list(tmp_path.glob(".killed.dlsa-tmp.*"))) == 1
    with open(tmp_path / "log", "w") as log:
        assert _dlsa("-v", *argv, stdout=subprocess.DEVNULL, stderr=log).wait() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed", "log"]
    text = (tmp_path / "log").read_text()
    assert "\r" not in text
    assert "dlsa.analysis.pair INFO fitting base" in text and "DEBUG" in text


def test_quiet_is_silent_on_stderr(run, files, tmp_path, capsys):
    argv = ["predict", "--model", str(run / "model"), "--features", str(files / "unlabelled.npz")]
    assert main([*argv, "--out", str(tmp_path / "p.npz"), "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_features_of_huge_magnitude_are_one_line(files, tmp_path, capsys):
    d = load_features(files / "train.h5")
    save_features(tmp_path / "huge.h5", d.X * 1e30, d.y)
    argv = ["fit", "--train", str(tmp_path / "huge.h5"), "--test", str(files / "test.npz")]
    assert main([*argv, "--out", str(tmp_path / "o"), *TINY]) == 2
    _one_line_error(capsys, "fit", "huge.h5", "non-finite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.h5"]


# ------------------------------------------- predict / evaluate read files in chunks
def test_streamed_evaluate_and_predict_equal_the_in_memory_results(run, files, tmp_path):
    from dlsa.analysis.evaluation import evaluate
    from dlsa.estimator import DLSAClassifier

    model = DLSAClassifier.load(run / "model")
    test = load_features(files / "test.npz")
    argv = ["-q", "evaluate", "--model", str(run / "model"), "--features", str(files / "test.npz")]
    assert main([*argv, "--out", str(tmp_path / "m.json")]) == 0
    saved = json.loads((tmp_path / "m.json").read_text())
    memory = evaluate(model, test.X, test.y)
    for key, value in memory["metrics"].items():
        assert saved["metrics"][key] == pytest.approx(value, abs=1e-9), key
    assert saved["stages"] == json.loads(json.dumps(memory["stages"]))
    argv = ["-q", "predict", "--model", str(run / "model"), "--features", str(files / "test.npz")]
    assert main([*argv, "--out", str(tmp_path / "p.npz")]) == 0
    with np.load(tmp_path / "p.npz") as data:
        np.testing.assert_array_equal(data["pred"], model.predict(test.X))
        np.testing.assert_allclose(data["proba"], model.predict_proba(test.X), atol=1e-6)


@pytest.mark.parametrize("command", ["predict", "evaluate", "figures"])
def test_a_bad_value_in_the_last_row_is_one_line_and_nothing_is_written(
    run, files, tmp_path, capsys, command
):
    test = load_features(files / "test.npz")
    X = test.X.copy()
    X[-1, 2] = np.inf
    with h5py.File(tmp_path / "late.h5", "w") as fp:  # save_features refuses inf
        fp["features"], fp["labels"] = X, test.y
    out = tmp_path / {"predict": "p.csv", "evaluate": "m.json", "figures": "figs"}[command]
    argv = [command, "--model", str(run / "model"), "--features", str(tmp_path / "late.h5")]
    assert main([*argv, "--out", str(out)]) == 2
    _one_line_error(capsys, command, "late.h5", f"row {len(X) - 1}", "inf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.h5"]


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_an_existing_out_file_is_kept_unless_overwrite(run, files, tmp_path, capsys, command):
    out = tmp_path / {"predict": "p.csv", "evaluate": "m.json"}[command]
    argv = [command, "--model", str(run / "model"), "--features", str(files / "test.npz")]
    assert main(["-q", *argv, "--out", str(out)]) == 0
    first = out.read_text()
    assert main([*argv, "--out", str(out)]) == 2
    _one_line_error(capsys, command, str(out), "exists", "--overwrite")
    assert out.read_text() == first
    out.write_text(first.replace("0", "9"))
    assert main(["-q", *argv, "--out", str(out), "--overwrite"]) == 0
    assert out.read_text() == first
    out.write_text("mine")  # not a file dlsa writes: kept even with --overwrite
    assert main(["-q", *argv, "--out", str(out), "--overwrite"]) == 2
    _one_line_error(capsys, command, str(out), "not a file written by dlsa")
    assert out.read_text() == "mine"


def test_sigterm_leaves_no_temporary_behind(files, tmp_path):
    """SIGTERM (Slurm, Kubernetes) ends a command like Ctrl-C: exit 143, one line, and
    the hidden temporary folder of --out removed."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "o"
    argv = ["fit", "--train", str(files / "train.h5"), "--test", str(files / "test.npz"),
            "--out", str(out), "--config", "small", "--head.epochs", "100000"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlsa", *argv], stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".o.") for p in tmp_path.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    assert err.strip().splitlines()[-1] == "dlsa fit: terminated"
    assert list(tmp_path.iterdir()) == []


def test_fit_and_evaluate_write_the_same_per_class_results(run, files, tmp_path):
    import csv

    with open(run / "per_class.csv") as f:
        fitted = list(csv.DictReader(f))
    header = ["class", "train_count", "test_count", "recall", "precision"]
    assert list(fitted[0])[:5] == header and "reference_recall" in fitted[0]
    assert [r["class"] for r in fitted] == [str(c) for c in range(8)]
    out = tmp_path / "pc.csv"
    argv = ["-q", "evaluate", "--model", str(run / "model"), "--features", str(files / "test.npz")]
    assert main([*argv, "--per-class", str(out)]) == 0
    with open(out) as f:
        evaluated = list(csv.DictReader(f))
    for a, b in zip(fitted, evaluated, strict=True):
        assert {k: v for k, v in a.items() if k != "reference_recall"} == b
    stages = [k for k in evaluated[0] if k.startswith("routed_")]
    assert stages[-1] == "routed_regular"
    for row in evaluated:
        assert sum(float(row[k]) for k in stages) == pytest.approx(1.0)
    saved = json.loads((run / "results.json").read_text())["dlsa"]["metrics"]["overall"]
    recalls = [float(r["recall"]) for r in evaluated]
    assert np.mean(recalls) == pytest.approx(saved)
