"""The driver side of a sweep: Tune callbacks that write Parquet, show progress and feed
the experiment trackers.

Rows are written once, by the driver, from a trial's final checkpoint; trial ids are
deterministic, so a trial rerun after a crash replaces its own files. No callback method
ever raises: an exception there would end the whole sweep.
"""

from __future__ import annotations

import functools
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

from harness import interrupts, store
from harness.progress import Progress
from harness.tune_worker import read_checkpoint
from ray.tune import Callback


def never_raise(method: Callable[..., None]) -> Callable[..., None]:
    """An exception in a callback would end the whole sweep; a write that fails here is
    retried by the reconciliation after ``fit`` and by ``resume``, so report and go on."""
    @functools.wraps(method)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            method(self, *args, **kwargs)
        except Exception as err:  # noqa: BLE001 - see the docstring
            print(f"sambench: {method.__name__} failed ({type(err).__name__}: {err}); "
                  "the trial is written again by the end of the run or by `sambench resume`",
                  file=sys.stderr, flush=True)
    return guarded


class StoreCallback(Callback):
    """Writes each finished trial to Parquet and shows live progress (harness.progress).

    Module-level (not a closure) because Tune pickles the run config, callbacks included;
    ``setup`` gives every fit a fresh clock. No method ever raises (``never_raise``).
    """

    def __init__(self, sweep_dir: Path, spec_hash: str, sweep: str, quiet: bool) -> None:
        self.sweep_dir, self.spec_hash, self.sweep, self.quiet = sweep_dir, spec_hash, sweep, quiet
        self.progress = Progress(total=0, quiet=True)
        self.pending: dict[str, list[dict]] = {}
        self.last_partial: dict[str, float] = {}
        self.concurrency: dict[str, list[int]] = {}

    def item(self, trial: Any) -> dict[str, Any]:
        """The trial's ``{"trial_id", "trial": config, "tags"}``; a search overrides it."""
        return trial.config["item"]

    @never_raise
    def setup(self, **info):
        self.progress = Progress.for_sweep(self.sweep_dir, quiet=self.quiet)

    def on_step_begin(self, iteration, trials, **info):
        interrupts.raise_if_signalled()  # SIGINT/SIGTERM, recorded by the handler: stop between two steps

    @never_raise
    def on_step_end(self, iteration, trials, **info):
        self.progress.refresh()  # the clock and the ETAs move between events too

    @never_raise
    def on_trial_start(self, iteration, trials, trial, **info):
        item = self.item(trial)
        last = (trial.last_result or {}).get("new_records") or [None]
        self.progress.started(item["trial_id"], item["trial"], last[-1])

    @never_raise
    def on_trial_result(self, iteration, trials, trial, result, **info):
        tid = self.item(trial)["trial_id"]
        self.concurrency.setdefault(tid, []).append(running_beside(trials, trial, result.get("node")))
        if result.get("new_records"):
            self.progress.result(tid, result["new_records"][-1])
        if result.get("new_records") and "done_records" not in result:
            self.pending.setdefault(tid, []).extend(result["new_records"])
            if time.monotonic() - self.last_partial.get(tid, 0.0) > 5.0:
                store.write_progress(self.sweep_dir, tid, self.pending[tid])
                self.last_partial[tid] = time.monotonic()

    @never_raise
    def on_trial_complete(self, iteration, trials, trial, **info):
        loaded = read_checkpoint(trial.checkpoint)
        if loaded is not None:
            records, summary = loaded
            self.write(self.item(trial), records, summary, summary["status"], None, trial.num_failures + 1)
            drop_checkpoints(trial.checkpoint)

    @never_raise
    def on_trial_error(self, iteration, trials, trial, **info):
        records, summary = read_checkpoint(trial.checkpoint) or ([], {})
        text = error_text(trial.error_file)
        store.write_error_log(self.sweep_dir, self.item(trial)["trial_id"], text)
        # Every attempt failed: Tune has counted each one in num_failures.
        self.write(self.item(trial), records, summary, "error", last_line(text), trial.num_failures)
        drop_checkpoints(trial.checkpoint)

    @never_raise
    def on_trial_recover(self, iteration, trials, trial, **info):
        self.progress.restarted(self.item(trial)["trial_id"])

    def write(self, item: dict, records: list[dict], summary: dict, status: str,
              error: str | None, attempts: int) -> None:
        tid = item["trial_id"]
        self.pending.pop(tid, None)
        seen = self.concurrency.pop(tid, [])
        row = store.trial_row(
            sweep=self.sweep, spec_hash=self.spec_hash, trial_id=tid, config=item["trial"],
            records=records, status=status, error=error, attempts=attempts,
            info=summary.get("info", {}), node=summary.get("node"), provenance=store.provenance(),
            tags=item.get("tags"), concurrency=statistics.median(seen) if seen else None,
        )
        store.write_trial(self.sweep_dir, row, records)
        self.progress.finished(tid, row)


def running_beside(trials: list[Any], trial: Any, node: str | None) -> int:
    """How many trials (``trial`` included) were running on the Ray node of its result when
    it arrived: timings taken beside different numbers of trials are not comparable. A
    trial counts once it has reported from that node (the driver learns where a trial runs
    from its results)."""
    return 1 + sum(1 for t in trials if t is not trial and t.status == "RUNNING"
                   and node is not None and (t.last_result or {}).get("node") == node)


def drop_checkpoints(checkpoint: Any) -> None:
    """Free the disk of a trial whose Parquet rows are committed (the rows hold all it
    recorded), so disk use grows with running trials, not finished ones: older checkpoints
    go whole, the final one keeps only its records and summary (kilobytes), which is what
    a resume needs if the driver died before Tune saved the trial as finished (the
    trainable then re-reports it without training). Works on any Tune storage (local,
    NFS, object store) through the checkpoint's filesystem."""
    if checkpoint is None:
        return
    import pyarrow.fs as pafs

    fs, final = checkpoint.filesystem, checkpoint.path.rstrip("/")
    folder = os.path.dirname(final)
    try:
        for entry in fs.get_file_info(pafs.FileSelector(folder)):
            if entry.type != pafs.FileType.Directory or not entry.base_name.startswith("checkpoint_"):
                continue
            if entry.path.rstrip("/") == final:
                fs.delete_file(f"{final}/state.pt")
            else:
                fs.delete_dir(entry.path)
    except OSError as error:  # a clean-up that failed costs disk space, never results
        print(f"sambench: could not delete the checkpoints in {folder}: {error}", file=sys.stderr)


class TrackerCallback(Callback):
    """Sends every record of every trial to the experiment trackers, from the driver.

    Trial ids and configs come from the store callback's ``item``, so tracker runs and
    Parquet rows carry the same ids. The trackers are opened lazily in the driver and left
    out of the pickled state Tune saves for a resume.
    """

    def __init__(self, names: tuple[str, ...], sweep_dir: Path, sweep: str, items: StoreCallback) -> None:
        self.names, self.sweep_dir, self.sweep, self.items = names, sweep_dir, sweep, items
        self._trackers: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_trackers": None}

    @property
    def trackers(self) -> Any:
        if self._trackers is None:
            from harness.trackers import Trackers

            self._trackers = Trackers(self.names, self.sweep_dir / "trackers", self.sweep)
        return self._trackers

    def on_trial_start(self, iteration, trials, trial, **info):
        item = self.items.item(trial)
        self.trackers.start(item["trial_id"], item["trial"])

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.trackers.log(self.items.item(trial)["trial_id"], result.get("new_records") or [])

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.trackers.finish(self.items.item(trial)["trial_id"], "ok")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.trackers.finish(self.items.item(trial)["trial_id"], "error")

    def on_experiment_end(self, trials, **info):
        if self._trackers is not None:
            self._trackers.close()
            self._trackers = None


def tracker_callbacks(names: tuple[str, ...], sweep_dir: Path, sweep: str, items: StoreCallback) -> list[Callback]:
    """A TrackerCallback when trackers are asked for; none otherwise."""
    return [TrackerCallback(tuple(names), sweep_dir, sweep, items)] if names else []


def error_text(error_file: str | None) -> str:
    """A failed trial's error file (the full traceback Tune recorded), or a placeholder."""
    text = Path(error_file).read_text(errors="replace") if error_file and os.path.exists(error_file) else ""
    return text.strip() or "trial failed (no error message)"


def last_line(text: str) -> str:
    """The exception line of a traceback, without Ray's frames."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else "trial failed (no error message)"
