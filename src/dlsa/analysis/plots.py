"""Figures of the paper, drawn from the outputs of :mod:`dlsa.metrics`.

Every function draws on a given ``Axes`` (or a new ``Figure``) and returns the
``Figure``. Only matplotlib's object API is used, so no backend or pyplot state is
touched; nothing here computes a metric or calls ``plt.show()``.

References:
    Xu, Y., Li, Y.-L., Li, J., Lu, C. "Constructing Balance from Imbalance for
    Long-tailed Image Recognition", ECCV 2022 (https://arxiv.org/abs/2208.02567):
    Fig. 1, 2, 5, 6, 7, 8 and supplement Fig. 3.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure, SubFigure

from dlsa.io.atomic import write_atomic
from dlsa.metrics import HEAD_THRESHOLD

HEAD_COLOR = "tab:red"
"""Colour of head-class samples (Fig. 8)."""
TAIL_COLOR = "tab:blue"
"""Colour of tail-class samples (Fig. 8)."""


def _root_figure(ax: Axes) -> Figure:
    """The top-level figure of ``ax``, also when ``ax`` sits in a sub-figure."""
    fig = ax.figure
    return fig.figure if isinstance(fig, SubFigure) else fig


def figure_and_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """Return ``ax`` and its root figure, or a new figure with one axes."""
    if ax is None:
        fig = Figure(figsize=figsize, layout="constrained")
        return fig, fig.add_subplot()
    return _root_figure(ax), ax


def _square(matrix: np.ndarray, name: str) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{name} must be a square (B, B) matrix, got shape {matrix.shape}")
    return matrix


def _bin_axes(ax: Axes, n_bins: int) -> None:
    ax.set_xlabel("predicted bin (frequent \u2192 rare)")
    ax.set_ylabel("true bin (frequent \u2192 rare)")
    # One tick per bin stays readable up to the paper's 20 bins; beyond, matplotlib decides.
    if n_bins <= 30:
        ticks = np.arange(n_bins)
        ax.set_xticks(ticks, labels=[str(t) for t in ticks], fontsize="small")
        ax.set_yticks(ticks, labels=[str(t) for t in ticks], fontsize="small")


def plot_confusion(
    matrix: np.ndarray, *, title: str = "Confusion matrix", ax: Axes | None = None
) -> Figure:
    """Binned confusion matrix, head at the top left (Fig. 1).

    Args:
        matrix: row-normalised rates of shape (B, B) from
            :func:`dlsa.metrics.confusion_matrix_binned`, bins sorted by frequency.
        title: axes title.
        ax: axes to draw on; a new figure when ``None``.

    Returns:
        The figure holding the image and its colour bar.

    Raises:
        ValueError: when ``matrix`` is not square.

    Example:
        >>> fig = plot_confusion(np.eye(3))
        >>> len(fig.axes)
        2
    """
    matrix = _square(matrix, "matrix")
    fig, ax = figure_and_axes(ax, (5.0, 4.2))
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="rate")
    _bin_axes(ax, matrix.shape[0])
    ax.set_title(title)
    return fig


def plot_confusion_difference(
    before: np.ndarray,
    after: np.ndarray,
    *,
    title: str = "Difference (after \u2212 before)",
    ax: Axes | None = None,
) -> Figure:
    """Difference of two binned confusion matrices, ``after - before`` (supp. Fig. 3).

    The diverging colour map is centred at 0: blue cells lost rate, red cells gained.

    Args:
        before: rates of shape (B, B), e.g. the base method alone.
        after: rates of shape (B, B), e.g. the base method with DLSA.
        title: axes title.
        ax: axes to draw on; a new figure when ``None``.

    Returns:
        The figure holding the image and its colour bar.

    Raises:
        ValueError: when the matrices are not square or differ in shape.

    Example:
        >>> fig = plot_confusion_difference(np.eye(2), np.full((2, 2), 0.5))
        >>> fig.axes[0].images[0].get_array().tolist()
        [[-0.5, 0.5], [0.5, -0.5]]
    """
    before, after = _square(before, "before"), _square(after, "after")
    if before.shape != after.shape:
        raise ValueError(
            f"before and after must have the same shape, got {before.shape} and {after.shape}"
        )
    difference = after - before
    limit = float(np.nanmax(np.abs(difference), initial=0.0)) or 1.0
    fig, ax = figure_and_axes(ax, (5.0, 4.2))
    norm = Normalize(vmin=-limit, vmax=limit)
    image = ax.imshow(difference, cmap="RdBu_r", norm=norm, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="rate difference")
    _bin_axes(ax, difference.shape[0])
    ax.set_title(title)
    return fig


def _sorted_curves(
    values_by_label: Mapping[str, np.ndarray], ax: Axes, ylabel: str, title: str
) -> None:
    """One line per run: its values sorted in descending order, NaN dropped."""
    for label, values in values_by_label.items():
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 1:
            raise ValueError(f"values of {label!r} must be 1-D, got shape {values.shape}")
        ordered = -np.sort(-values[~np.isnan(values)])
        ax.plot(np.arange(1, ordered.size + 1), ordered, label=label)
    ax.set_xlabel("cluster rank")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if values_by_label:
        ax.legend()


def plot_cluster_sizes(
    sizes_by_label: Mapping[str, np.ndarray], *, ax: Axes | None = None
) -> Figure:
    """Cluster sizes sorted from largest to smallest, one line per run (Fig. 5).

    Args:
        sizes_by_label: run name (e.g. ``"with L_bal"``) to cluster sizes of shape (K,).
        ax: axes to draw on; a new figure when ``None``.

    Returns:
        The figure.

    Raises:
        ValueError: when a size array is not 1-D.

    Example:
        >>> fig = plot_cluster_sizes({"with L_bal": np.array([3, 5, 4])})
        >>> fig.axes[0].lines[0].get_ydata().tolist()
        [5.0, 4.0, 3.0]
    """
    fig, ax = figure_and_axes(ax, (5.0, 3.5))
    _sorted_curves(sizes_by_label, ax, "cluster size (samples)", "Cluster sizes")
    return fig


def plot_cluster_purity(
    purity_by_label: Mapping[str, np.ndarray], *, ax: Axes | None = None
) -> Figure:
    """Cluster purities sorted from purest, one line per run (Fig. 6).

    Empty clusters (NaN purity) are left out, so each line is as long as the run's
    number of non-empty clusters.

    Args:
        purity_by_label: run name (e.g. ``"with L_pure"``) to purities of shape (K,).
        ax: axes to draw on; a new figure when ``None``.

    Returns:
        The figure.

    Raises:
        ValueError: when a purity array is not 1-D.

    Example:
        >>> fig = plot_cluster_purity({"without": np.array([0.5, np.nan, 0.9])})
        >>> fig.axes[0].lines[0].get_ydata().tolist()
        [0.9, 0.5]
    """
    fig, ax = figure_and_axes(ax, (5.0, 3.5))
    _sorted_curves(purity_by_label, ax, "purity (share of largest class)", "Cluster purity")
    ax.set_ylim(0.0, 1.05)
    return fig


def plot_separation(
    accuracy_by_run: Mapping[str, Sequence[float | None]], *, ax: Axes | None = None
) -> Figure:
    """Head-tail separation accuracy per flow filter, grouped bars per run (Fig. 7).

    Args:
        accuracy_by_run: run name (e.g. a feature model) to one accuracy in [0, 1] per
            filter level (level 1 first); ``None`` (no sample selected) draws no bar.
        ax: axes to draw on; a new figure when ``None``.

    Returns:
        The figure.

    Example:
        >>> fig = plot_separation({"PaCo": [0.8, 0.7, None], "CE": [0.6, 0.5, 0.4]})
        >>> len(fig.axes[0].patches)
        5
    """
    fig, ax = figure_and_axes(ax, (5.0, 3.5))
    n_levels = max((len(values) for values in accuracy_by_run.values()), default=0)
    width = 0.8 / max(len(accuracy_by_run), 1)
    for i, (label, values) in enumerate(accuracy_by_run.items()):
        levels = [k for k, value in enumerate(values) if value is not None]
        heights = [float(values[k]) for k in levels]
        positions = np.asarray(levels, dtype=np.float64) + (i + 0.5) * width - 0.4
        ax.bar(positions, heights, width=width, label=label)
    ax.set_xticks(np.arange(n_levels), labels=[f"filter {k + 1}" for k in range(n_levels)])
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("separation accuracy (tail share)")
    ax.set_title("Head-tail separation")
    if accuracy_by_run:
        ax.legend()
    return fig


def _stage_names(n_levels: int) -> list[str]:
    names = [f"cluster-aided classifier {k + 1}" for k in range(n_levels)]
    return [*names, "regular classifier"]


def _check_cascade(
    embedding: np.ndarray, is_tail: np.ndarray, stage: np.ndarray, n_levels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    embedding, is_tail, stage = np.asarray(embedding), np.asarray(is_tail), np.asarray(stage)
    if embedding.ndim != 2 or embedding.shape[1] != 2:
        raise ValueError(f"embedding must have shape (N, 2), got {embedding.shape}")
    n = embedding.shape[0]
    for name, array in (("is_tail", is_tail), ("stage", stage)):
        if array.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {array.shape}")
    if is_tail.dtype != np.bool_:
        raise ValueError(f"is_tail must be a boolean mask, got dtype {is_tail.dtype}")
    if n and (stage.min() < 0 or stage.max() > n_levels):
        raise ValueError(f"stage must lie in [0, {n_levels}], got [{stage.min()}, {stage.max()}]")
    return embedding, is_tail, stage


def plot_cascade_tsne(
    embedding: np.ndarray,
    is_tail: np.ndarray,
    stage: np.ndarray,
    n_levels: int,
    *,
    axes: Sequence[Axes] | None = None,
    head_threshold: int = HEAD_THRESHOLD,
) -> Figure:
    """Where the cascade sends head and tail samples, on a 2-D t-SNE map (Fig. 8).

    One panel per stage: stage ``k < n_levels`` is the cluster-aided classifier of filter
    ``k + 1``, stage ``n_levels`` the regular classifier. Each panel shows its samples,
    head in red and tail in blue, over all other samples in light grey. The legend
    states the threshold; a map without tail (or head) samples says so in the legend's
    title instead of showing an empty entry.

    Args:
        embedding: 2-D coordinates of shape (N, 2), e.g. from
            :func:`dlsa.analysis.tsne.tsne_embedding`.
        is_tail: boolean mask of shape (N,), true for samples of tail classes.
        stage: stage of each sample, shape (N,), in ``0 .. n_levels``.
        n_levels: number of flow filters.
        axes: ``n_levels + 1`` axes to draw on; a new figure with one row when ``None``.
        head_threshold: the most training samples of a tail class (as
            :data:`dlsa.metrics.HEAD_THRESHOLD`, which ``is_tail`` should follow), for
            the legend.

    Returns:
        The figure.

    Raises:
        ValueError: on bad shapes, stages out of range or a wrong number of axes.

    Example:
        >>> emb = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
        >>> fig = plot_cascade_tsne(emb, np.array([True, False, True]), np.array([0, 1, 1]), 1)
        >>> len(fig.axes)
        2
    """
    embedding, is_tail, stage = _check_cascade(embedding, is_tail, stage, n_levels)
    if axes is None:
        fig = Figure(figsize=(3.2 * (n_levels + 1), 3.4), layout="constrained")
        axes = list(fig.subplots(1, n_levels + 1, squeeze=False)[0])
    elif len(axes) != n_levels + 1:
        raise ValueError(f"axes must hold n_levels + 1 = {n_levels + 1} axes, got {len(axes)}")
    groups = [
        (~is_tail, HEAD_COLOR, f"head (> {head_threshold} training samples)"),
        (is_tail, TAIL_COLOR, f"tail (\u2264 {head_threshold} training samples)"),
    ]
    shown = [g for g in groups if g[0].any()]
    for k, (ax, name) in enumerate(zip(axes, _stage_names(n_levels), strict=True)):
        here = stage == k
        ax.scatter(*embedding[~here].T, s=2, c="0.85", label="other stages")
        for mask, color, label in shown:
            ax.scatter(*embedding[here & mask].T, s=4, c=color, label=label)
        ax.set_title(name, fontsize="medium")
        ax.set_xticks([])
        ax.set_yticks([])
    missing = [label.split(" ")[0] for mask, _, label in groups if not mask.any()]
    rule = f"tail: \u2264 {head_threshold} training samples"
    title = f"no {' or '.join(missing)} class here ({rule})"
    axes[0].legend(
        loc="best", fontsize="small", markerscale=3, title=title if missing else None,
        title_fontsize="small",
    )  # fmt: skip
    return _root_figure(axes[0])


def plot_separation_probe(
    p_values: Sequence[float],
    accuracies: Sequence[float],
    *,
    label: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Overall accuracy against the head-tail separation probability p (Fig. 2).

    The probe (supplement Sec. 1) sends head samples to the head group with probability
    ``p`` and tail samples to the tail group with probability ``p``: 0.5 is a random,
    1.0 an ideal separation.

    Args:
        p_values: separation probabilities, shape (P,).
        accuracies: overall accuracy in [0, 1] at each p, shape (P,).
        label: legend entry of the curve; no legend when ``None``.
        ax: axes to draw on (call again with it to add curves); a new figure when ``None``.

    Returns:
        The figure.

    Raises:
        ValueError: when the two sequences differ in length.

    Example:
        >>> fig = plot_separation_probe([1.0, 0.5, 0.75], [0.6, 0.4, 0.5])
        >>> fig.axes[0].lines[0].get_xdata().tolist()
        [0.5, 0.75, 1.0]
    """
    p, accuracy = np.asarray(p_values, dtype=np.float64), np.asarray(accuracies, np.float64)
    if p.ndim != 1 or p.shape != accuracy.shape:
        raise ValueError(
            f"p_values and accuracies must be 1-D of equal length, got shapes "
            f"{p.shape} and {accuracy.shape}"
        )
    order = np.argsort(p, kind="stable")
    fig, ax = figure_and_axes(ax, (4.5, 3.5))
    ax.plot(p[order], accuracy[order], marker="o", label=label)
    ax.set_xlabel("separation probability p")
    ax.set_ylabel("overall accuracy")
    ax.set_title("Head-tail separation probe")
    if label is not None:
        ax.legend()
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 150) -> Path:
    """Write ``fig`` as a PNG atomically, creating parent folders.

    The image goes to a temporary file in the target folder, which then replaces
    ``path``, so a reader never sees a half-written file.

    Args:
        fig: figure to save.
        path: destination file.
        dpi: resolution in dots per inch.

    Returns:
        The destination path.

    Example:
        >>> import tempfile, pathlib
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     out = save_figure(Figure(), pathlib.Path(tmp) / "a" / "fig.png")
        ...     out.read_bytes()[:4]
        b'\\x89PNG'
    """
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
