"""Figures from a feature file read in chunks equal those from features in memory; the
t-SNE of the cascade (Fig. 8) they embed."""

from __future__ import annotations

import numpy as np
import pytest

from dlsa import DLSAClassifier
from dlsa.analysis.figures import write_figures, write_figures_file
from dlsa.analysis.tsne import tsne_embedding, tsne_rows
from dlsa.config import FilterConfig, HeadConfig, MixtureConfig
from dlsa.io.features import save_features


def test_figures_of_a_file_read_by_chunks_equal_those_in_memory(lt_data, tmp_path):
    kw = {"head": HeadConfig(epochs=2), "selection": None, "base": "balsoftmax"}
    flt = FilterConfig(mixture=MixtureConfig(8, sigma=0.5), epochs=2, batch_size=128)
    base = DLSAClassifier(depth=0, **kw).fit(lt_data.X_train, lt_data.y_train)
    model = DLSAClassifier(depth=2, flow_filter=flt, **kw).fit(lt_data.X_train, lt_data.y_train)
    path = save_features(tmp_path / "test.h5", lt_data.X_test, lt_data.y_test)
    kw = {"base": base, "tsne_samples": 40, "random_state": 1}
    memory = write_figures(model, lt_data.X_test, lt_data.y_test, tmp_path / "memory", **kw)
    streamed = write_figures_file(model, path, tmp_path / "streamed", chunk_rows=7, **kw)
    assert [p.name for p in streamed] == [p.name for p in memory]
    assert len(memory) == 8 and memory[-1].name == "reliability.png"
    for a, b in zip(memory, streamed, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def _drawn(monkeypatch) -> dict[str, object]:
    """The figures ``write_figures`` draws, by file name (nothing is written)."""
    import dlsa.analysis.figures as figures

    drawn: dict[str, object] = {}

    def keep(fig, path):
        drawn[path.name] = fig
        return path

    monkeypatch.setattr(figures, "save_figure", keep)
    return drawn


def _legend(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_legends_name_the_reference_and_the_chosen_model_as_the_report(
    lt_data, tmp_path, monkeypatch
):
    """Issue 32: a chosen model without DLSA is not drawn as "base + DLSA"; the legends
    name both models as report.md does, and tail is the report's (<= 50 samples)."""
    from dlsa.analysis.figures import model_names

    kw = {"head": HeadConfig(epochs=2), "selection": None, "base": "balsoftmax"}
    flt = FilterConfig(mixture=MixtureConfig(8, sigma=0.5), epochs=2, batch_size=128)
    base = DLSAClassifier(depth=0, **kw).fit(lt_data.X_train, lt_data.y_train)
    dlsa = DLSAClassifier(depth=1, flow_filter=flt, **kw).fit(lt_data.X_train, lt_data.y_train)
    drawn = _drawn(monkeypatch)
    args = (lt_data.X_test, lt_data.y_test, tmp_path)
    write_figures(base, *args, base=base, tsne_samples=40)
    assert model_names(base, base) == ("balsoftmax", "balsoftmax (chosen)")
    assert _legend(drawn["per_class_accuracy.png"]) == ["balsoftmax", "balsoftmax (chosen)"]
    assert _legend(drawn["reliability.png"])[1:] == ["balsoftmax", "balsoftmax (chosen)"]
    assert drawn["confusion.png"].axes[0].get_title() == "balsoftmax (chosen)"
    assert _legend(drawn["cascade_tsne.png"])[1:] == [
        "head (> 50 training samples)",
        "tail (\u2264 50 training samples)",
    ]
    write_figures(dlsa, *args, base=base, tsne_samples=40)
    ref, chosen = model_names(dlsa, base)
    assert ref == "balsoftmax" and chosen.startswith("balsoftmax + DLSA")
    assert _legend(drawn["per_class_accuracy.png"]) == [ref, chosen]
    assert _legend(drawn["reliability.png"])[1:] == [ref, chosen]
    title = drawn["confusion_difference.png"].axes[0].get_title()
    assert title == f"Difference ({chosen} \u2212 {ref})"
    assert not any("base + DLSA" in name for name in _legend(drawn["per_class_accuracy.png"]))


# --- t-SNE -------------------------------------------------------------------------------


def test_tsne_embedding_subsample_is_deterministic() -> None:
    X = np.random.default_rng(1).normal(size=(60, 5))
    emb_a, idx_a = tsne_embedding(X, random_state=3, perplexity=5.0, max_samples=25, n_threads=1)
    emb_b, idx_b = tsne_embedding(X, random_state=3, perplexity=5.0, max_samples=25, n_threads=1)
    assert emb_a.shape == (25, 2) and idx_a.shape == (25,)
    assert np.all(np.diff(idx_a) > 0) and idx_a.max() < 60
    np.testing.assert_array_equal(idx_a, idx_b)
    np.testing.assert_allclose(emb_a, emb_b)
    _, idx_c = tsne_embedding(X, random_state=4, perplexity=5.0, max_samples=25, n_threads=1)
    assert not np.array_equal(idx_a, idx_c)


def test_tsne_embedding_keeps_all_when_small_and_validates() -> None:
    X = np.random.default_rng(2).normal(size=(15, 3))
    emb, idx = tsne_embedding(X, random_state=0, perplexity=4.0, n_threads=1)
    assert emb.shape == (15, 2) and idx.tolist() == list(range(15))
    assert np.isfinite(emb).all()
    with pytest.raises(ValueError, match=r"X must be 2-D.*\(15,\)"):
        tsne_embedding(X[:, 0], random_state=0)
    with pytest.raises(ValueError, match="perplexity"):
        tsne_embedding(X, random_state=0, perplexity=30.0)


def test_tsne_rows_are_the_rows_tsne_embedding_embeds() -> None:
    X = np.random.default_rng(1).normal(size=(60, 5))
    _, idx = tsne_embedding(X, random_state=3, perplexity=5.0, max_samples=25, n_threads=1)
    np.testing.assert_array_equal(tsne_rows(60, 25, random_state=3), idx)
