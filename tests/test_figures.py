"""Figures from a feature file read in chunks equal those from features in memory."""

from __future__ import annotations

from dlsa import DLSAClassifier
from dlsa.analysis.figures import write_figures, write_figures_file
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
