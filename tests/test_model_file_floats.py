"""Numbers of a saved model that float32 turns to 0 or infinity (issue 30): a
``model.json`` whose temperature was edited to 1e-300 used to load and predict every row
as the first class with confidence NaN, exit 0. Such values are refused at load, naming
the file and the field, and a prediction is never NaN silently."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlsa import DLSAClassifier
from dlsa.cli import main
from dlsa.config import FilterConfig, HeadConfig, MixtureConfig
from dlsa.datasets.synthetic import make_long_tailed_features
from dlsa.errors import DLSAInputError, ModelFileError
from dlsa.io.features import save_features


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A fitted logit-adjust model (a float base parameter: tau) and a feature file."""
    d = make_long_tailed_features(n_classes=3, n_features=4, n_max=40, imbalance=4, seed=1)
    flt = FilterConfig(mixture=MixtureConfig(4), epochs=1, batch_size=64)
    model = DLSAClassifier(
        depth=1, flow_filter=flt, head=HeadConfig(epochs=1), base="logit-adjust",
        selection=None, random_state=0,
    )  # fmt: skip
    root = tmp_path_factory.mktemp("floats")
    model.fit(d.X_train, d.y_train).set_test_prior("train").save(root / "model")
    save_features(root / "test.h5", d.X_test, d.y_test)
    return root, d


def _edited(root, tmp_path, edit):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("model.safetensors", "model.json"):
        (folder / name).write_bytes((root / "model" / name).read_bytes())
    meta = json.loads((folder / "model.json").read_text())
    edit(meta)
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def _set(path, value):
    def edit(meta):
        *parents, last = path
        target = meta
        for key in parents:
            target = target[key]
        target[last] = value

    return edit


@pytest.mark.parametrize(
    "path, value, field",
    [
        (("temperature",), 1e-300, "temperature = 1e-300 is 0"),
        (("temperature",), 1e-40, "temperature = 1e-40 is 0"),  # subnormal in float32
        (("temperature",), 1e300, "temperature = 1e+300 is infinite"),
        (("test_prior", 0), 1e-300, "test_prior[0] = 1e-300 is 0"),
        (("params", "base_params", "tau"), 1e300, "params.base_params.tau = 1e+300"),
        (("temperature",), 10**400, "temperature = 10000000000000000000..."),
        (("temperature",), float("nan"), "temperature must be a finite number > 0, got nan"),
        (("temperature",), "2", "temperature must be a finite number > 0, got '2'"),
    ],
    ids=["t-tiny", "t-subnormal", "t-huge", "prior-tiny", "tau-huge", "t-int", "t-nan", "t-text"],
)
def test_a_number_float32_cannot_hold_is_refused_at_load(
    saved, tmp_path, capsys, path, value, field
):
    root, _ = saved
    folder = _edited(root, tmp_path, _set(path, value))
    with pytest.raises(ModelFileError) as caught:
        DLSAClassifier.load(folder)
    assert f"{folder / 'model.json'}: {field}" in str(caught.value)
    for command in ("predict", "evaluate"):
        out = tmp_path / f"{command}.csv"
        argv = [command, "--model", str(folder), "--features", str(root / "test.h5")]
        assert main([*argv, *(["--out", str(out)] if command == "predict" else [])]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and field in err and "Traceback" not in err
        assert not out.exists()


def test_an_untouched_model_still_loads_and_predicts(saved, tmp_path):
    root, d = saved
    folder = _edited(root, tmp_path, _set(("temperature",), 1.5))
    proba = DLSAClassifier.load(folder).predict_proba(d.X_test)
    assert np.isfinite(proba).all() and np.allclose(proba.sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize("method", ["predict_proba", "predict", "decision_function"])
def test_scores_that_would_be_nan_raise_instead(saved, method):
    root, d = saved
    model = DLSAClassifier.load(root / "model")
    model.temperature_ = 1e-300  # set in Python, past the checks of load
    with pytest.raises(DLSAInputError, match="scores of row 0 are not finite"):
        getattr(model, method)(d.X_test)


def test_a_test_prior_float32_rounds_to_zero_is_refused(saved):
    root, _ = saved
    model = DLSAClassifier.load(root / "model")
    with pytest.raises(DLSAInputError, match="0 in float32"):
        model.set_test_prior(np.array([1e-300, 1.0, 1.0]))
    model.set_test_prior(np.array([0.0, 1.0, 1.0]))  # an exact 0 is a valid prior
