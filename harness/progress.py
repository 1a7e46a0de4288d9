"""Live progress of a sweep on the driver: counts, each running trial's epoch k/E with an
ETA, and the best result so far.

On a terminal one compact line is rewritten in place (cut to the terminal's width); in a
log (stdout is a pipe or a file) a plain line without escape codes is printed at most every
``every`` seconds, plus one when a trial fails and one when the last trial is recorded.
Counts come from the trials this driver committed plus those already recorded, not from
Tune's trial states (which lag behind the callbacks), so the count reaches N/N.

"Best" has one meaning everywhere (here, ``sambench ls`` and the docs): the highest
*final* test accuracy of a finished trial, per workload (dataset/model); for synthetic
problems, the lowest final relative suboptimality. See ``headline``.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TextIO

from harness import store
from harness.store import method_label

RUNNING_SHOWN_IN_LOGS = 8  # a log line names at most this many running trials
_open_line: list["Progress"] = []  # the view whose terminal line is still open (at most one)


def headline(row: Mapping[str, Any]) -> tuple[str, float, bool] | None:
    """(label, value, higher is better) of a finished trial's row, or None when it has no
    final metric: the final validation accuracy when the trial holds a validation split (so
    that picking the best does not use test data), else the final test accuracy, else the
    final relative suboptimality."""
    if row.get("status") == "error":
        return None
    val = row.get("final_val_acc")
    if _is_value(val):
        return "final val acc", float(val), True
    acc = row.get("final_test_acc")
    if _is_value(acc):
        return "final test acc", float(acc), True
    subopt = row.get("final_rel_subopt")
    if _is_value(subopt):
        return "final rel. subopt.", float(subopt), False
    return None


def better(a: tuple[str, float, bool], b: tuple[str, float, bool] | None) -> bool:
    """Whether headline ``a`` beats ``b`` (None is beaten by anything)."""
    if b is None:
        return True
    return a[1] > b[1] if a[2] else a[1] < b[1]


def work(config: Mapping[str, Any], record: Mapping[str, Any]) -> tuple[float, float, str]:
    """(done, total, unit) of a trial: epochs when its length is given in epochs, else
    optimizer steps."""
    if config.get("epochs") is not None:
        return float(record.get("epoch") or 0.0), float(config["epochs"]), "epoch"
    return float(record.get("iteration") or 0), float(config.get("iterations") or math.nan), "it"


def format_seconds(seconds: float) -> str:
    """12s, 4m05s, 3h12m."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class _Running:
    """One running trial. Its rate comes from the trial's own clock (``time_total`` of
    its records), so worker start-up and data loading never enter the ETA."""

    label: str
    config: Mapping[str, Any]
    done: float = 0.0
    total: float = math.nan
    unit: str = "epoch"
    base: tuple[float, float] | None = None   # (work, trial seconds) the rate is measured from
    latest: tuple[float, float] | None = None  # (trial seconds, driver clock) of the last record

    def update(self, record: Mapping[str, Any], now: float) -> None:
        self.done, self.total, self.unit = work(self.config, record)
        seconds = record.get("time_total")
        if seconds is None:
            return
        if self.base is None:
            self.base = (self.done, float(seconds))
        self.latest = (float(seconds), now)

    def eta(self, now: float) -> float:
        if self.base is None or self.latest is None or self.done <= self.base[0] or self.latest[0] <= self.base[1]:
            return math.nan
        rate = (self.done - self.base[0]) / (self.latest[0] - self.base[1])
        return max(0.0, (self.total - self.done) / rate - (now - self.latest[1]))

    def describe(self, now: float) -> str:
        done = f"{self.done:g}" if self.unit == "epoch" else f"{int(self.done)}"
        total = f"{self.total:g}" if math.isfinite(self.total) else "?"
        return f"{self.label} {self.unit} {done}/{total} ETA {format_seconds(self.eta(now))}"


@dataclass
class Progress:
    """The driver's live view of one ``run``/``resume``; the clock starts at creation."""

    total: int                        # trials in the sweep's grid
    quiet: bool = False
    stream: TextIO | None = None      # None: sys.stdout at the time of writing (Tune pickles this)
    every: float = 10.0               # seconds between log lines
    clock: Callable[[], float] = time.monotonic
    tty: bool | None = None           # None: ask the stream

    def __post_init__(self) -> None:
        if self.tty is None:
            self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.start = self.clock()
        self.statuses: dict[str, str] = {}  # trial id -> ok, diverged or error, once recorded
        self.running: dict[str, _Running] = {}
        self.best: dict[str, tuple[tuple[str, float, bool], str]] = {}
        self.printed_at = -math.inf
        self.drawn_at = -math.inf
        self.line_open = False
        self.failures_shown = 0
        self.complete_shown = False  # the N/N line is printed once

    # -- events ------------------------------------------------------------------------
    @classmethod
    def for_sweep(cls, sweep_dir: Path, quiet: bool) -> "Progress":
        """A progress view of a sweep folder, counting the trials it already records."""
        progress = cls(total=store.expected_trials(store.read_manifest(sweep_dir)), quiet=quiet)
        progress.seed(store.trials_table([sweep_dir]).to_pylist())
        return progress

    def seed(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Count the trials recorded before this session and take their best results."""
        for row in rows:
            self.statuses[row["trial_id"]] = row["status"]
            self._consider(row)

    def started(self, trial_id: str, config: Mapping[str, Any], last: Mapping[str, Any] | None = None) -> None:
        """A trial started; ``last`` is its last reported record when Tune restored it
        from a checkpoint, whose rate is then measured from its first new record."""
        self.statuses.pop(trial_id, None)  # an errored trial that is rerun is not recorded
        self.complete_shown = False
        entry = _Running(f"{trial_id[:6]} {method_label(config)}", config)
        entry.done, entry.total, entry.unit = work(config, last or {})
        entry.base = None if last else (0.0, 0.0)  # a fresh trial starts at no work, no time
        self.running[trial_id] = entry
        self.refresh()

    def restarted(self, trial_id: str) -> None:
        """A failed attempt is retried from its last checkpoint: measure the rate anew."""
        if trial_id in self.running:
            self.running[trial_id].base = self.running[trial_id].latest = None
        self.refresh()

    def result(self, trial_id: str, record: Mapping[str, Any]) -> None:
        if trial_id in self.running and record.get("iteration") is not None:
            self.running[trial_id].update(record, self.clock())
        self.refresh()

    def finished(self, trial_id: str, row: Mapping[str, Any]) -> None:
        """A trial's row is committed: ok, diverged or error."""
        self.running.pop(trial_id, None)
        self.statuses[trial_id] = row["status"]
        self._consider(row)
        self.refresh(force=True)

    # -- output ------------------------------------------------------------------------
    def line(self) -> str:
        """Counts, then the running trials (what a narrow terminal must still show), then
        the best result per workload."""
        now = self.clock()
        recorded, failed = len(self.statuses), self.failed
        pending = max(0, self.total - recorded - len(self.running))
        text = (f"[{format_seconds(now - self.start):>6}] {recorded}/{self.total} recorded · "
                f"{len(self.running)} running · {pending} pending · {failed} failed")
        running = [entry.describe(now) for entry in self.running.values()]
        if not self.tty and len(running) > RUNNING_SHOWN_IN_LOGS:
            running = running[:RUNNING_SHOWN_IN_LOGS] + [f"+{len(running) - RUNNING_SHOWN_IN_LOGS} more"]
        if running:
            text += " | " + "; ".join(running)
        best = []
        for workload, ((label, value, _), who) in sorted(self.best.items()):
            shown = f"{value:.4f}" if label.endswith("acc") else f"{value:.3e}"
            best.append(f"best {label} on {workload} {shown} ({who})")
        return text + (" | " + " · ".join(best) if best else "")

    def refresh(self, force: bool = False) -> None:
        """Redraw (terminal: at most twice a second) or log (every ``every`` seconds, and
        at once on a failure or when everything is recorded); the N/N line comes once."""
        if self.quiet or self.complete_shown:
            return
        now = self.clock()
        complete = len(self.statuses) >= self.total
        if self.tty:
            if not (force or complete) and now - self.drawn_at < 0.5:
                return
            width = shutil.get_terminal_size().columns
            text = self.line()
            if len(text) >= width:
                text = text[: max(0, width - 2)] + "…"
            self.out.write("\r" + text + "\x1b[K")
            if not self.line_open:
                _open_line[:] = [self]
            self.line_open, self.drawn_at = True, now
            self.out.flush()
        elif complete or self.failed > self.failures_shown or now - self.printed_at >= self.every:
            self.out.write(self.line() + "\n")
            self.out.flush()
            self.printed_at, self.failures_shown = now, self.failed
        if complete:
            self.complete_shown = True
            self.close()

    @property
    def out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stdout

    @property
    def failed(self) -> int:
        return sum(status == "error" for status in self.statuses.values())

    def close(self) -> None:
        """End the in-place line, so whatever is printed next starts on its own line."""
        if self.line_open:
            self.out.write("\n")
            self.out.flush()
            self.line_open = False
            _open_line.clear()

    def _consider(self, row: Mapping[str, Any]) -> None:
        score = headline(row)
        if score is None:
            return
        workload = f"{row.get('dataset')}/{row.get('model')}"
        if workload not in self.best or better(score, self.best[workload][0]):
            self.best[workload] = (score, f"{row.get('method')}, trial {row.get('trial_id')}")


def end_line() -> None:
    """Close the open terminal line, if any: called when a fit ends, however it ends."""
    for progress in list(_open_line):
        progress.close()


def _is_value(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))
