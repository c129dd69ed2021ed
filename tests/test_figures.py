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
