"""Progress lines that reach a log: one short line per phase of a long run.

Progress bars (tqdm) are drawn only on a terminal; a run whose stderr is a file, a
pipe or a notebook cell would otherwise say nothing for minutes. The long phases of dlsa
(stage-1 epochs, feature extraction, the rounds of the selection, the fits of heads and
filters) therefore also report to the logger ``dlsa.progress`` through a
:class:`Phase`: at most one line every :data:`INTERVAL` seconds while the phase runs,
and one when it ends, e.g. ``selection: base method: 12/31 fold fits (41 s)``.

The ``dlsa`` command shows these lines on stderr (as ``dlsa: <line>``) only when stderr
is not a terminal and ``-q`` is not given (:func:`show_progress_lines`); a library user
sees them by enabling INFO for ``dlsa.progress`` (``logging.basicConfig(level="INFO")``).
"""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import TextIO

__all__ = ["INTERVAL", "PROGRESS_LOGGER", "Phase", "fmt_seconds", "show_progress_lines"]

PROGRESS_LOGGER = "dlsa.progress"
"""Name of the logger of the progress lines."""

INTERVAL = 5.0
"""Fewest seconds between two lines of one phase (its last line always comes)."""

logger = logging.getLogger(PROGRESS_LOGGER)


def fmt_seconds(seconds: float) -> str:
    """A duration for a log line: ``4.1 s``, ``41 s``, ``12 min 05 s``, ``2 h 03 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Phase:
    """The rate-limited progress lines of one phase of a run.

    Args:
        name: what runs, first on every line (``"selection: base method"``).
        total: how many steps the phase has (None: unknown).
        counter: how the count reads; ``{done}`` and ``{total}`` are replaced.
        interval: fewest seconds between two lines (default :data:`INTERVAL`).

    Example:
        >>> phase = Phase("features", total=10, counter="{done}/{total} images")
        >>> phase.update(5)  # too early for a line
        False
        >>> phase.done
        5
        >>> _ = phase.end()  # the end of a phase always logs (where INFO is shown)
    """

    def __init__(
        self,
        name: str,
        total: int | None = None,
        counter: str = "{done}/{total}",
        *,
        interval: float | None = None,
    ) -> None:
        self.name, self.total, self.counter = name, total, counter
        self.interval = INTERVAL if interval is None else interval
        self.done = 0
        self.start = self.last = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Seconds since the phase began."""
        return time.perf_counter() - self.start

    def update(self, done: int, detail: str = "") -> bool:
        """Record ``done`` steps; log a line if :attr:`interval` seconds passed since
        the last one. Returns whether a line was logged."""
        self.done = done
        now = time.perf_counter()
        if now - self.last < self.interval or not logger.isEnabledFor(logging.INFO):
            return False
        self.last = now
        self._log(detail)
        return True

    def advance(self, steps: int = 1, detail: str = "") -> bool:
        """:meth:`update` with ``steps`` more steps done."""
        return self.update(self.done + steps, detail)

    def end(self, detail: str = "", done: int | None = None) -> bool:
        """Log the phase's last line (always, if the logger shows INFO)."""
        if done is not None:
            self.done = done
        if not logger.isEnabledFor(logging.INFO):
            return False
        self._log(detail)
        return True

    def _log(self, detail: str) -> None:
        total = "?" if self.total is None else self.total
        parts = [self.counter.format(done=self.done, total=total)] if self.counter else []
        parts += [detail] if detail else []
        text = ": " + ", ".join(parts) if parts else ""
        logger.info("%s%s (%s)", self.name, text, fmt_seconds(self.seconds))

    def note(self, detail: str) -> None:
        """Log ``<name>: <detail>`` now, e.g. what the phase is about to do."""
        logger.info("%s: %s", self.name, detail)

    def __enter__(self) -> Phase:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None:
            self.end()


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a line is logged (a test's capture,
    a notebook's stream)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:  # StreamHandler.__init__ sets it
        pass


def show_progress_lines(quiet: bool, stream: TextIO | None = None) -> bool:
    """Configure the ``dlsa`` command's progress lines: on stderr as ``dlsa: <line>``,
    unless ``quiet`` or stderr (``stream``, default ``sys.stderr``) is a terminal, where
    the progress bars show instead. Returns whether the lines are shown."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    show = not quiet and not (callable(isatty) and isatty())
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("dlsa: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO if show else logging.WARNING)
    return show
