"""The driver's live progress: counts to N/N, per-trial epoch k/E and ETA, terminal vs log
output, a fresh clock after a resume, and one meaning of "best" in progress and ``ls``."""

from __future__ import annotations

import io
import pickle
import re

import pytest

from harness import store
from harness.progress import Progress, end_line, format_seconds, headline

SAM = {"optimizer": "sam", "lam": 1.0, "epochs": 5, "dataset": "digits", "model": "mlp"}
RIDGE = {"optimizer": "sgd", "lam": None, "epochs": None, "iterations": 1000, "dataset": "ridge",
         "model": "linear"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _row(tid: str, status: str = "ok", acc: float | None = 0.9, **extra) -> dict:
    return {"trial_id": tid, "status": status, "final_test_acc": acc, "dataset": "digits", "model": "mlp",
            "method": "SAM", **extra}


def _progress(total: int, tty: bool, every: float = 10.0) -> tuple[Progress, io.StringIO, FakeClock]:
    out, clock = io.StringIO(), FakeClock()
    return Progress(total=total, stream=out, tty=tty, every=every, clock=clock), out, clock


def test_log_lines_are_plain_periodic_and_reach_n_of_n():
    progress, out, clock = _progress(total=2, tty=False)
    progress.started("aaaaaa000000", SAM)
    progress.started("bbbbbb000000", RIDGE)
    clock.now += 8  # within `every` of the last line: nothing new
    progress.result("aaaaaa000000", {"epoch": 1.0, "iteration": 14, "time_total": 8.0})
    progress.result("bbbbbb000000", {"epoch": 2.0, "iteration": 200, "time_total": 2.0})
    clock.now += 2  # the ETA counts down between records
    progress.refresh()
    clock.now += 1
    progress.finished("aaaaaa000000", _row("aaaaaa000000"))
    progress.finished("bbbbbb000000", _row("bbbbbb000000", acc=None, final_rel_subopt=1e-3,
                                           dataset="ridge", model="linear", method="SGD"))
    progress.refresh()  # after the N/N line nothing more is printed
    lines = out.getvalue().splitlines()
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()
    assert lines[0].startswith("[    0s] 0/2 recorded · 1 running · 1 pending · 0 failed")
    assert "aaaaaa SAM epoch 1/5 ETA 30s" in lines[1] and "bbbbbb SGD it 200/1000 ETA 6s" in lines[1]
    assert lines[-1].startswith("[   11s] 2/2 recorded · 0 running · 0 pending · 0 failed")
    assert "best final test acc on digits/mlp 0.9000" in lines[-1]
    assert "best final rel. subopt. on ridge/linear 1.000e-03" in lines[-1]
    assert len(lines) == 3


def test_a_failure_is_logged_at_once():
    progress, out, clock = _progress(total=3, tty=False)
    progress.started("aaaaaa000000", SAM)
    clock.now += 1
    progress.finished("aaaaaa000000", _row("aaaaaa000000", status="error", acc=None))
    assert out.getvalue().splitlines()[-1].startswith("[    1s] 1/3 recorded · 0 running · 2 pending · 1 failed")


def test_terminal_line_is_rewritten_in_place_and_closed():
    progress, out, clock = _progress(total=1, tty=True)
    progress.started("aaaaaa000000", SAM)
    clock.now += 1
    progress.result("aaaaaa000000", {"epoch": 1.0, "iteration": 14, "time_total": 1.0})
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\x1b[K") and "\n" not in text
    end_line()  # e.g. an interrupt: whatever follows starts on its own line
    assert out.getvalue().endswith("\n")
    end_line()
    assert not out.getvalue().endswith("\n\n")
    progress.finished("aaaaaa000000", _row("aaaaaa000000"))
    assert "1/1 recorded" in out.getvalue().splitlines()[-1] and out.getvalue().endswith("\x1b[K\n")


def test_eta_of_a_restored_trial_is_measured_from_where_it_resumed():
    """The trial's own clock: start-up time (here 50 s) never enters the rate."""
    progress, _, clock = _progress(total=1, tty=False)
    progress.started("aaaaaa000000", SAM, last={"epoch": 4.0, "iteration": 56, "time_total": 400.0})
    assert progress.running["aaaaaa000000"].describe(clock()) == "aaaaaa SAM epoch 4/5 ETA ?"
    clock.now += 60
    progress.result("aaaaaa000000", {"epoch": 3.0, "iteration": 42, "time_total": 300.0})  # the checkpoint's
    assert progress.running["aaaaaa000000"].describe(clock()) == "aaaaaa SAM epoch 3/5 ETA ?"
    clock.now += 100
    progress.result("aaaaaa000000", {"epoch": 4.0, "iteration": 56, "time_total": 400.0})
    assert progress.running["aaaaaa000000"].describe(clock()) == "aaaaaa SAM epoch 4/5 ETA 1m40s"
    clock.now += 30
    assert progress.running["aaaaaa000000"].describe(clock()) == "aaaaaa SAM epoch 4/5 ETA 1m10s"


def test_a_rerun_of_an_errored_trial_is_not_counted_twice():
    progress, out, _ = _progress(total=2, tty=False)
    progress.seed([_row("aaaaaa000000"), _row("bbbbbb000000", status="error", acc=None)])
    progress.started("bbbbbb000000", SAM)
    progress.finished("bbbbbb000000", _row("bbbbbb000000"))
    assert out.getvalue().splitlines()[-1].startswith("[    0s] 2/2 recorded · 0 running · 0 pending · 0 failed")


@pytest.mark.parametrize("seconds, text", [(0.4, "0s"), (59, "59s"), (61, "1m01s"), (3725, "1h02m"),
                                           (float("nan"), "?")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_resume_restarts_the_clock(tmp_path):
    """Tune pickles the callbacks and restores them on resume; ``setup`` starts a new view
    whose clock starts at zero and which counts the trials already recorded."""
    from fakes import make_results
    from harness.tune_callbacks import StoreCallback

    sweep = make_results(tmp_path, n_seeds=1, epochs=2, incomplete=True)
    callback = StoreCallback(sweep, "hash", "fake-sweep", quiet=False)
    callback.setup()
    callback.progress.start -= 3600  # the first session ran an hour
    restored = pickle.loads(pickle.dumps(callback))
    restored.setup()
    recorded = len(store.read_trials(sweep))
    total = len(store.read_manifest(sweep)["trials"])
    line = restored.progress.line()
    assert re.match(rf"\[ *\d{{1,2}}s\] {recorded}/{total} recorded", line), line  # not an hour and more


def test_best_means_the_same_in_progress_and_ls(tmp_path):
    """The best final accuracy, not the best epoch: a trial that peaked higher but ended
    lower is not the best."""
    from harness.status import sweep_status

    rows = [_row("aaaaaa000000", acc=0.80, best_test_acc=0.95), _row("bbbbbb000000", acc=0.85, best_test_acc=0.86)]
    progress, _, _ = _progress(total=2, tty=False)
    progress.seed(rows)
    assert "(SAM, trial bbbbbb000000)" in progress.line()
    assert headline(rows[1]) == ("final test acc", 0.85, True)
    from fakes import make_results

    sweep = make_results(tmp_path, n_seeds=2, epochs=3)
    trials = store.read_trials(sweep)
    best = trials.loc[trials["final_test_acc"].idxmax(), "trial_id"]
    assert f"(trial {best})" in sweep_status(sweep)
    seeded = Progress.for_sweep(sweep, quiet=True)
    assert f"trial {best})" in seeded.line()


def test_with_a_validation_split_best_is_chosen_on_validation(monkeypatch):
    """Trial a has the better test accuracy, b the better validation accuracy: b is the best,
    and the summary line reports b's test accuracy beside the validation accuracy it was
    chosen by."""
    from harness import status

    rows = [_row("aaaaaa000000", acc=0.95, final_val_acc=0.80), _row("bbbbbb000000", acc=0.85, final_val_acc=0.90)]
    progress, _, _ = _progress(total=2, tty=False)
    progress.seed(rows)
    assert "(SAM, trial bbbbbb000000)" in progress.line()
    assert headline(rows[0]) == ("final val acc", 0.80, True)
    assert status._best_lines(rows) == [
        "  best on digits/mlp: final val acc 0.9000 (test 0.8500) — SAM (trial bbbbbb000000)"]
