"""Tests of dlsa.analysis.plots: each function returns a Figure with the expected artists.

plots.py uses only the Figure object API, which needs no backend, so no ``matplotlib.use``.
"""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from dlsa.analysis.plots import (
    HEAD_COLOR,
    TAIL_COLOR,
    plot_cascade_tsne,
    plot_cluster_purity,
    plot_cluster_sizes,
    plot_confusion,
    plot_confusion_difference,
    plot_separation,
    plot_separation_probe,
    save_figure,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_plot_confusion_image_and_colorbar() -> None:
    matrix = np.random.default_rng(0).dirichlet(np.ones(4), size=4)
    fig = plot_confusion(matrix, title="CE")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2  # image + colour bar
    ax = fig.axes[0]
    assert len(ax.images) == 1 and ax.get_title() == "CE"
    np.testing.assert_allclose(ax.images[0].get_array(), matrix)


def test_plot_confusion_on_given_axes() -> None:
    fig = Figure()
    ax = fig.add_subplot(1, 2, 1)
    assert plot_confusion(np.eye(3), ax=ax) is fig
    assert len(ax.images) == 1


def test_plot_confusion_on_subfigure_axes_returns_root() -> None:
    fig = Figure()
    ax = fig.subfigures(1, 2)[1].add_subplot()
    assert plot_confusion(np.eye(2), ax=ax) is fig


def test_plot_confusion_rejects_non_square() -> None:
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        plot_confusion(np.zeros((2, 3)))


def test_plot_confusion_difference_centred_at_zero() -> None:
    before = np.array([[0.9, 0.1], [0.3, 0.7]])
    after = np.array([[0.8, 0.2], [0.1, 0.9]])
    fig = plot_confusion_difference(before, after)
    assert len(fig.axes) == 2
    image = fig.axes[0].images[0]
    np.testing.assert_allclose(image.get_array(), after - before)
    low, high = image.get_clim()
    assert low == pytest.approx(-high) and high == pytest.approx(0.2)


def test_plot_confusion_difference_of_equal_matrices_and_shape_check() -> None:
    fig = plot_confusion_difference(np.eye(2), np.eye(2))
    assert fig.axes[0].images[0].get_clim() == (-1.0, 1.0)
    with pytest.raises(ValueError, match=r"\(2, 2\) and \(3, 3\)"):
        plot_confusion_difference(np.eye(2), np.eye(3))


def test_plot_cluster_sizes_one_sorted_line_per_run() -> None:
    runs = {"with L_bal": np.array([5, 9, 0, 7]), "without": np.array([30, 0, 0, 1])}
    fig = plot_cluster_sizes(runs)
    ax = fig.axes[0]
    assert len(fig.axes) == 1 and len(ax.lines) == 2
    assert ax.lines[0].get_ydata().tolist() == [9, 7, 5, 0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(runs)


def test_plot_cluster_purity_drops_empty_clusters() -> None:
    runs = {"with L_pure": np.array([0.9, np.nan, 0.4]), "without": np.array([0.2, 0.3, 0.1])}
    ax = plot_cluster_purity(runs).axes[0]
    assert len(ax.lines) == 2
    assert ax.lines[0].get_ydata().tolist() == [0.9, 0.4]
    assert ax.lines[1].get_xdata().tolist() == [1, 2, 3]


def test_plot_cluster_sizes_rejects_2d() -> None:
    with pytest.raises(ValueError, match=r"'a'.*\(2, 2\)"):
        plot_cluster_sizes({"a": np.ones((2, 2))})


def test_plot_separation_grouped_bars_skip_none() -> None:
    runs = {"PaCo": [0.8, None, 0.6], "CBS": [0.7, 0.65, 0.55], "CE": [0.6, 0.5]}
    ax = plot_separation(runs).axes[0]
    assert len(ax.patches) == 7
    assert len(ax.get_xticks()) == 3
    heights = sorted(round(p.get_height(), 2) for p in ax.patches)
    assert heights == [0.5, 0.55, 0.6, 0.6, 0.65, 0.7, 0.8]


def test_plot_cascade_tsne_one_panel_per_stage() -> None:
    rng = np.random.default_rng(0)
    embedding = rng.normal(size=(40, 2))
    is_tail = rng.random(40) < 0.5
    stage = rng.integers(0, 4, size=40)
    fig = plot_cascade_tsne(embedding, is_tail, stage, n_levels=3)
    assert len(fig.axes) == 4
    for k, ax in enumerate(fig.axes):
        context, head, tail = ax.collections
        assert len(head.get_offsets()) == np.sum((stage == k) & ~is_tail)
        assert len(tail.get_offsets()) == np.sum((stage == k) & is_tail)
        assert len(context.get_offsets()) == np.sum(stage != k)
        np.testing.assert_allclose(head.get_facecolor()[0], to_rgba(HEAD_COLOR))
        np.testing.assert_allclose(tail.get_facecolor()[0], to_rgba(TAIL_COLOR))
    assert fig.axes[-1].get_title() == "regular classifier"


def test_plot_cascade_tsne_given_axes_and_validation() -> None:
    fig = Figure()
    axes = fig.subplots(2, 1)
    embedding, is_tail = np.zeros((3, 2)), np.array([True, False, True])
    assert plot_cascade_tsne(embedding, is_tail, np.array([0, 1, 1]), 1, axes=axes) is fig
    with pytest.raises(ValueError, match="n_levels \\+ 1 = 3"):
        plot_cascade_tsne(embedding, is_tail, np.array([0, 1, 1]), 2, axes=axes)
    with pytest.raises(ValueError, match=r"stage must lie in \[0, 1\]"):
        plot_cascade_tsne(embedding, is_tail, np.array([0, 2, 1]), 1)
    with pytest.raises(ValueError, match=r"embedding must have shape \(N, 2\).*\(3, 3\)"):
        plot_cascade_tsne(np.zeros((3, 3)), is_tail, np.array([0, 1, 1]), 1)
    with pytest.raises(ValueError, match="boolean mask"):
        plot_cascade_tsne(embedding, np.array([1, 0, 1]), np.array([0, 1, 1]), 1)


def test_plot_separation_probe_sorted_curve_and_overlay() -> None:
    fig = plot_separation_probe([0.9, 0.5, 0.7], [0.55, 0.41, 0.47], label="linear")
    ax = fig.axes[0]
    assert ax.lines[0].get_xdata().tolist() == [0.5, 0.7, 0.9]
    assert ax.lines[0].get_ydata().tolist() == [0.41, 0.47, 0.55]
    assert plot_separation_probe([0.5, 1.0], [0.3, 0.6], label="cosine", ax=ax) is fig
    assert len(ax.lines) == 2
    with pytest.raises(ValueError, match=r"\(2,\) and \(3,\)"):
        plot_separation_probe([0.5, 1.0], [0.1, 0.2, 0.3])


def test_save_figure_writes_png_atomically(tmp_path) -> None:
    fig = plot_confusion(np.eye(3))
    target = tmp_path / "nested" / "dir" / "confusion.png"
    assert save_figure(fig, target) == target
    assert target.read_bytes()[:8] == PNG_SIGNATURE
    save_figure(plot_cluster_sizes({"a": np.arange(4)}), str(target))  # overwrite in place
    assert target.read_bytes()[:8] == PNG_SIGNATURE
    assert [p.name for p in target.parent.iterdir()] == ["confusion.png"]  # no temp left


def test_save_figure_leaves_no_temp_file_on_failure(tmp_path, monkeypatch) -> None:
    fig = Figure()

    def fail(*args, **kwargs) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        save_figure(fig, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_plot_cascade_tsne_without_tail_samples_says_so() -> None:
    """Issue 32: a set without tail classes is not drawn under a legend promising
    "tail"; the legend's title says there is none, with the threshold."""
    emb = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    fig = plot_cascade_tsne(emb, np.zeros(3, dtype=bool), np.array([0, 1, 1]), 1)
    legend = fig.axes[0].get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["other stages", "head (> 50 training samples)"]
    assert legend.get_title().get_text() == (
        "no tail class here (tail: \u2264 50 training samples)"
    )
    fig = plot_cascade_tsne(
        emb, np.array([True, False, True]), np.array([0, 1, 1]), 1, head_threshold=20
    )
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()][1:] == [
        "head (> 20 training samples)",
        "tail (\u2264 20 training samples)",
    ]
    assert legend.get_title().get_text() == ""
