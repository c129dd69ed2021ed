"""Nothing of the user's is lost: ``--overwrite`` replaces only what dlsa wrote, a second
writer of the same output fails instead of replacing the first, every output is refused
when it exists without ``--overwrite``, and text outputs are UTF-8 whatever the locale."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlsa.cli import main
from dlsa.datasets.synthetic import make_long_tailed_features
from dlsa.io import atomic
from dlsa.io.atomic import rename_noreplace
from dlsa.io.features import save_features
from dlsa.io.outputs import (
    OutputExistsError,
    OutputRefusedError,
    check_folder,
    output_file,
    output_folder,
)

FAST = ["--config", "small", "--no-selection", "--base", "balsoftmax", "--depth", "1",
        "--flow-filter.mixture.n-components", "4", "--flow-filter.epochs", "1",
        "--head.epochs", "1", "--validation-folds", "0", "-q"]  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = make_long_tailed_features(n_classes=5, n_features=4, n_max=40, imbalance=5, seed=0)
    root = tmp_path_factory.mktemp("feat")
    save_features(root / "train.npz", d.X_train, d.y_train)
    save_features(root / "test.npz", d.X_test, d.y_test)
    return root


def fit_argv(files: Path, out: Path) -> list[str]:
    return ["fit", "--train", str(files / "train.npz"), "--test", str(files / "test.npz"),
            "--out", str(out), *FAST]  # fmt: skip


@pytest.fixture(scope="module")
def run(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(fit_argv(files, out)) == 0
    return out


def one_line_error(capsys, command: str, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"dlsa {command}: error: "), err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def user_folder(tmp_path: Path) -> Path:
    mine = tmp_path / "mydata"
    mine.mkdir()
    (mine / "thesis.tex").write_text("\\chapter{mine}", encoding="utf-8")
    return mine


def no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".dlsa-tmp." in p.name]


# ------------------------------------------------- --overwrite replaces only dlsa's
@pytest.mark.parametrize("command", ["fit", "compare", "figures", "demo"])
def test_overwrite_never_replaces_a_folder_dlsa_did_not_write(
    files, run, tmp_path, capsys, command
):
    mine = user_folder(tmp_path)
    argv = {
        "fit": fit_argv(files, mine),
        "compare": ["compare", "--train", str(files / "train.npz"), "--test",
                    str(files / "test.npz"), "--bases", "balsoftmax", "--out", str(mine)],
        "figures": ["figures", "--model", str(run / "model"), "--features",
                    str(files / "test.npz"), "--out", str(mine)],
        "demo": ["demo", "--out", str(mine), "--data-root", str(tmp_path / "none")],
    }[command]  # fmt: skip
    assert main([*argv, "--overwrite"]) == 2
    one_line_error(capsys, command, f"--out {mine}", "not a folder written by dlsa")
    assert (mine / "thesis.tex").read_text(encoding="utf-8") == "\\chapter{mine}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mydata"]


def test_overwrite_replaces_a_run_of_dlsa_but_not_one_the_user_added_to(files, run, tmp_path):
    out = tmp_path / "again"
    assert main(fit_argv(files, out)) == 0
    assert json.loads((out / ".dlsa-output.json").read_text(encoding="utf-8"))["command"] == "fit"
    (out / "report.md").write_text("edited by dlsa's user, still dlsa's file")
    assert main([*fit_argv(files, out), "--overwrite"]) == 0
    assert "edited" not in (out / "report.md").read_text(encoding="utf-8")
    (out / "model" / "notes.txt").write_text("mine")
    assert main([*fit_argv(files, out), "--overwrite"]) == 2
    assert (out / "model" / "notes.txt").read_text() == "mine"
    assert no_temporaries(tmp_path)


def test_a_run_holding_other_dlsa_outputs_is_still_dlsa_s(files, run, tmp_path):
    out = tmp_path / "run"
    assert main(fit_argv(files, out)) == 0
    argv = ["figures", "--model", str(out / "model"), "--features", str(files / "test.npz")]
    assert main([*argv, "--out", str(out / "figures"), "-q"]) == 0
    argv = ["predict", "--model", str(out / "model"), "--features", str(files / "test.npz")]
    assert main([*argv, "--out", str(out / "pred.csv"), "-q"]) == 0
    assert check_folder(out, overwrite=True) == out
    assert main([*fit_argv(files, out), "--overwrite"]) == 0
    assert not (out / "figures").exists()


def test_model_save_replaces_only_a_dlsa_folder(run, tmp_path):
    from dlsa import DLSAClassifier

    model = DLSAClassifier.load(run / "model")
    mine = user_folder(tmp_path)
    with pytest.raises(OutputRefusedError, match="not a folder written by dlsa"):
        model.save(mine)
    with pytest.raises(OutputRefusedError, match="is a folder"):
        output_file(mine, lambda p: p.write_text("x"), overwrite=True)
    (tmp_path / "data.h5").write_text("not a feature file")
    with pytest.raises(OutputRefusedError, match="not a file written by dlsa"):
        save_features(tmp_path / "data.h5", np.ones((2, 3)))
    assert (tmp_path / "data.h5").read_text() == "not a feature file"
    assert (mine / "thesis.tex").exists() and no_temporaries(tmp_path)


def test_folders_of_older_dlsa_versions_are_recognised_by_their_layout(run, tmp_path):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for name in ("model", "base_model"):
        (legacy / name).mkdir()
        for file in ("model.json", "model.safetensors"):
            (legacy / name / file).write_bytes((run / name / file).read_bytes())
    (legacy / "results.json").write_text(json.dumps({"dlsa_version": "0.1"}))
    (legacy / "report.md").write_text("old")
    assert check_folder(legacy, overwrite=True) == legacy
    with pytest.raises(OutputExistsError, match="pass overwrite=True"):
        check_folder(legacy, overwrite=False)
    (legacy / "model" / "extra.txt").write_text("mine")
    with pytest.raises(OutputRefusedError, match="not a folder written by dlsa"):
        check_folder(legacy, overwrite=True)


# ------------------------------------------------------------- a second writer
def test_a_second_fit_on_the_same_out_fails_and_the_first_result_stays(
    files, tmp_path, capsys, monkeypatch
):
    """The other writer finishes between this fit's start check and its final rename:
    this fit must fail with "exists" and leave the other's result as it was."""
    import dlsa.cli.commands as commands

    out = tmp_path / "race"
    real_report = commands.fit_report

    def other_writer_finishes_first(results):
        with output_folder(out, overwrite=False, command="fit") as tmp:
            (tmp / "results.json").write_text('{"dlsa_version": "first"}')
        return real_report(results)

    monkeypatch.setattr(commands, "fit_report", other_writer_finishes_first)
    assert main(fit_argv(files, out)) == 2
    one_line_error(capsys, "fit", f"--out {out} exists", "another process")
    assert json.loads((out / "results.json").read_text())["dlsa_version"] == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race"]


def test_an_empty_folder_filled_meanwhile_is_not_replaced(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    with pytest.raises(OutputExistsError, match="another process"):
        with output_folder(out, overwrite=False, flag="--out") as tmp:
            (tmp / "a.txt").write_text("mine")
            (out / "theirs.txt").write_text("theirs")
    assert [p.name for p in out.iterdir()] == ["theirs.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_a_second_predict_to_the_same_file_fails(run, files, tmp_path, capsys, monkeypatch):
    import dlsa.analysis.streaming as streaming

    out = tmp_path / "p.csv"
    real = streaming._write_csv

    def other_writer_first(tmp, *args):
        out.write_text("index,pred,confidence,stage\n0,first,1.0,0\n")
        real(tmp, *args)

    monkeypatch.setattr(streaming, "_write_csv", other_writer_first)
    argv = ["predict", "--model", str(run / "model"), "--features", str(files / "test.npz")]
    assert main([*argv, "--out", str(out)]) == 2
    one_line_error(capsys, "predict", f"--out {out} exists", "another process")
    assert "first" in out.read_text() and no_temporaries(tmp_path)


def test_overwrite_checks_the_old_output_again_when_it_replaces_it(tmp_path):
    out = tmp_path / "run"
    with output_folder(out, overwrite=False) as tmp:
        (tmp / "report.md").write_text("dlsa's")
    with pytest.raises(OutputRefusedError, match="not a folder written by dlsa"):
        with output_folder(out, overwrite=True, flag="--out") as tmp:
            (tmp / "report.md").write_text("new")
            (out / "thesis.tex").write_text("mine")  # added while the command ran
    assert (out / "thesis.tex").read_text() == "mine"
    assert (out / "report.md").read_text() == "dlsa's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.parametrize("fallback", [False, True])
def test_rename_noreplace_never_replaces(tmp_path, monkeypatch, fallback):
    if fallback:  # no renameat2: hard link for files, a checked rename for folders
        monkeypatch.setattr(atomic, "_libc_renameat2", lambda: None)
    elif atomic._libc_renameat2() is None:
        pytest.skip("no renameat2 here")
    src, dest = tmp_path / "src.txt", tmp_path / "dest.txt"
    src.write_text("new")
    dest.write_text("old")
    with pytest.raises(FileExistsError):
        rename_noreplace(src, dest)
    assert (src.read_text(), dest.read_text()) == ("new", "old")
    dest.unlink()
    rename_noreplace(src, dest)
    assert dest.read_text() == "new" and not src.exists()
    folder, taken = tmp_path / "f", tmp_path / "taken"
    folder.mkdir()
    taken.mkdir()
    with pytest.raises(FileExistsError):
        rename_noreplace(folder, taken)  # os.rename would replace this empty folder
    rename_noreplace(folder, tmp_path / "free")
    assert (tmp_path / "free").is_dir() and not folder.exists()


# ------------------------------------------- every file output refuses an existing one
def test_diagnose_refuses_an_existing_out_unless_overwrite(files, tmp_path, capsys):
    out = tmp_path / "d.json"
    argv = ["diagnose", "--train", str(files / "train.npz"), "--out", str(out), *FAST]
    assert main(argv) == 0
    written = out.read_text(encoding="utf-8")
    assert "dlsa_version" in written
    assert main(argv) == 2
    one_line_error(capsys, "diagnose", f"--out {out} exists", "--overwrite")
    assert out.read_text(encoding="utf-8") == written
    assert main([*argv, "--overwrite"]) == 0
    mine = tmp_path / "mine.json"
    mine.write_text('{"my": "notes"}')
    argv[argv.index(str(out))] = str(mine)
    assert main([*argv, "--overwrite"]) == 2
    one_line_error(capsys, "diagnose", f"--out {mine}", "not a file written by dlsa")
    assert mine.read_text() == '{"my": "notes"}'


def test_extract_refuses_an_existing_out_unless_overwrite(tmp_path, capsys):
    import torch
    from PIL import Image

    from dlsa.backbones import ResNet, save_checkpoint

    backbone = ResNet(in_channels=1, n_classes=2, generator=torch.Generator().manual_seed(0))
    save_checkpoint(backbone, tmp_path / "b", metadata={"image_size": 12})
    (tmp_path / "img").mkdir()
    for i in range(2):
        Image.fromarray(np.full((12, 12), 40 * i, dtype=np.uint8)).save(tmp_path / f"img/{i}.png")
    out = tmp_path / "f.h5"
    argv = ["-q", "extract", "--backbone", str(tmp_path / "b"), "--images", str(tmp_path / "img"),
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    before = out.read_bytes()
    assert main(argv) == 2
    one_line_error(capsys, "extract", f"--out {out} exists", "--overwrite")
    assert out.read_bytes() == before
    assert main([*argv, "--overwrite"]) == 0
    mine = tmp_path / "mine.h5"
    mine.write_text("my own HDF5, honestly")
    argv[argv.index(str(out))] = str(mine)
    assert main([*argv, "--overwrite"]) == 2
    one_line_error(capsys, "extract", f"--out {mine}", "not a file written by dlsa")
    assert mine.read_text() == "my own HDF5, honestly"
    assert not (tmp_path / "mine.h5.files.csv").exists() and no_temporaries(tmp_path)
    # the map beside the feature file is checked too: a user's file there is refused
    # (nothing written), dlsa's own is replaced with --overwrite
    argv[argv.index(str(mine))] = str(out)
    user_map = tmp_path / "f.h5.files.csv"
    dlsa_map = user_map.read_bytes()
    user_map.write_text("my,own\nnotes\n", encoding="utf-8")
    before = out.read_bytes()
    assert main([*argv, "--overwrite"]) == 2
    one_line_error(capsys, "extract", f"--out {user_map}", "not a file written by dlsa")
    assert user_map.read_text(encoding="utf-8") == "my,own\nnotes\n"
    assert out.read_bytes() == before
    user_map.write_bytes(dlsa_map)
    assert main([*argv, "--overwrite"]) == 0
    assert user_map.read_bytes() == dlsa_map and no_temporaries(tmp_path)


def test_the_rows_to_files_map_is_dlsa_s_only_beside_a_dlsa_feature_file(files, tmp_path):
    from dlsa.io.ownership import written_by_dlsa

    features = tmp_path / "f.npz"
    features.write_bytes((files / "test.npz").read_bytes())
    csv_map, txt_map = tmp_path / "f.npz.files.csv", tmp_path / "f.npz.files.txt"
    csv_map.write_text("row,file\n0,a.png\n", encoding="utf-8")
    txt_map.write_text("a.png\n", encoding="utf-8")  # the map of older dlsa versions
    assert written_by_dlsa(csv_map) and written_by_dlsa(txt_map)
    csv_map.write_text("a.png\n", encoding="utf-8")  # not the map's header
    assert not written_by_dlsa(csv_map)
    csv_map.write_text("row,file\n0,a.png\n", encoding="utf-8")
    features.write_text("mine", encoding="utf-8")  # not a feature file of dlsa's
    assert not written_by_dlsa(csv_map) and not written_by_dlsa(txt_map)


@pytest.mark.parametrize("flag", ["--out", "--per-class"])
def test_evaluate_refuses_a_user_file_even_with_overwrite(run, files, tmp_path, capsys, flag):
    mine = tmp_path / ("m.json" if flag == "--out" else "pc.csv")
    mine.write_text("mine")
    argv = ["evaluate", "--model", str(run / "model"), "--features", str(files / "test.npz")]
    assert main([*argv, flag, str(mine), "--overwrite"]) == 2
    one_line_error(capsys, "evaluate", f"{flag} {mine}", "not a file written by dlsa")
    assert mine.read_text() == "mine"
    mine.unlink()
    assert main([*argv, flag, str(mine), "-q"]) == 0
    assert main([*argv, flag, str(mine), "-q"]) == 2
    assert main([*argv, flag, str(mine), "--overwrite", "-q"]) == 0


def test_an_out_file_that_is_a_folder_is_refused(run, files, tmp_path, capsys):
    mine = user_folder(tmp_path)
    argv = ["predict", "--model", str(run / "model"), "--features", str(files / "test.npz")]
    assert main([*argv, "--out", str(mine / ".." / "mydata.csv"), "-q"]) == 0
    target = tmp_path / "x.csv"
    target.mkdir()
    assert main([*argv, "--out", str(target), "--overwrite"]) == 2
    one_line_error(capsys, "predict", f"--out {target} is a folder")
    assert target.is_dir()


# ------------------------------------------------------------ UTF-8 whatever the locale
def test_non_ascii_class_names_round_trip_under_an_ascii_locale(tmp_path):
    """Under LC_ALL=C without UTF-8 mode, Python's default text encoding is ASCII: every
    text output must still be written (and read) as UTF-8, and stdout escape what ASCII
    cannot show instead of failing."""
    d = make_long_tailed_features(n_classes=4, n_features=4, n_max=30, imbalance=3, seed=1)
    names = np.array(["Straße", "café", "東京", "naïve"])
    save_features(tmp_path / "train.npz", d.X_train, names[d.y_train])
    save_features(tmp_path / "test.npz", d.X_test, names[d.y_test])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "LANG")}
    env |= {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "OMP_NUM_THREADS": "1"}

    def dlsa(*argv: str) -> bytes:
        proc = subprocess.run([sys.executable, "-m", "dlsa", *argv], env=env,
                              capture_output=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        return proc.stdout

    train, test, out = tmp_path / "train.npz", tmp_path / "test.npz", tmp_path / "run"
    printed = dlsa("fit", "--train", str(train), "--test", str(test), "--out", str(out), *FAST)
    assert b"Stra\\xdfe" in printed
    model = ["--model", str(out / "model"), "--features", str(test)]
    dlsa("predict", *model, "--out", str(tmp_path / "p.csv"), "-q")
    dlsa("evaluate", *model, "--per-class", str(tmp_path / "pc.csv"), "-q")
    for path in (out / "per_class.csv", tmp_path / "pc.csv"):
        first = [line.split(",")[0] for line in path.read_text(encoding="utf-8").splitlines()]
        assert sorted(first[1:]) == sorted(names.tolist())
    predicted = {line.split(",")[1] for line in
                 (tmp_path / "p.csv").read_text(encoding="utf-8").splitlines()[1:]}  # fmt: skip
    assert predicted <= set(names.tolist())
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["classes"] == sorted(names.tolist())
