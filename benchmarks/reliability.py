"""Reliability under fire: the driver SIGKILLed again and again, then resumed.

One *run*: an 8-trial digits sweep (6 epochs each: 48 epoch rows) is started with
``sambench run``; at a random moment ``--kill-min``..``--kill-max`` seconds after each
driver starts, its whole process group gets SIGKILL, and ``sambench resume`` takes over;
``--kills`` times (10), or until the sweep finishes first. A last resume runs to the end.
A run *ends complete* when every trial has exactly one trials row and one epochs row per
evaluation, on disk (the store) and through ``analysis.load``; no resume failed on its
own (the old "stuck" failure); no Ray process of the run is left behind (each run has its
own RAY_TMPDIR, so its processes are found by that path); and, with ``--report``, the
report renders. The run is repeated ``--repeats`` times (20): the failure this guards
against was intermittent.

The bad-input table of tests/test_bad_input.py is tried once, in process, and counted.

    PYTHONPATH=. .venv/bin/python benchmarks/reliability.py [--repeats 20] [--kills 10]

Prints one line per run and a summary; ``--json PATH`` also writes the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = """
name: reliability
dataset: digits
model: mlp
width: 64
epochs: 6
batch_size: 64
lr: 0.1
grid:
  blocks:
    - {optimizer: sgd}
    - {optimizer: sam, rho: 0.05}
  seed: [0, 1, 2, 3]
resources: {cpu: 1}
"""
TRIALS, EPOCHS = 8, 6


def _driver(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "a") as out:
        return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], env=env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def one_run(seed: int, kills: int, kill_min: float, kill_max: float, report: bool) -> dict:
    """One full kill-and-resume run in a fresh folder; returns its figures."""
    rng = random.Random(seed)
    base = Path(tempfile.mkdtemp(prefix="rb-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    spec_file, results, log = base / "spec.yaml", base / "results", base / "drivers.log"
    spec_file.write_text(SPEC)
    sweep_dir = results / "reliability"
    env = dict(os.environ, RAY_TMPDIR=str(base / "ray"), SAMBENCH_CHECKPOINT_SECONDS="2",
               PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    (base / "ray").mkdir()
    figures = {"seed": seed, "kills": 0, "stuck": 0, "finished_before_kills": False}
    run = ["run", str(spec_file), "--results", str(results)]
    for _ in range(kills):
        # As the interrupted message says: `run` again when the kill came before the
        # manifest was written (nothing recorded yet), `resume` after.
        driver = _driver(_next_command(run, sweep_dir), env, log)
        try:
            driver.wait(timeout=rng.uniform(kill_min, kill_max))
        except subprocess.TimeoutExpired:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
            figures["kills"] += 1
        else:  # it ended by itself: finished, or failed (the stuck case)
            if driver.returncode != 0:
                figures["stuck"] += 1
            elif _recorded(sweep_dir) == TRIALS:
                figures["finished_before_kills"] = True
                break
    final = _driver(_next_command(run, sweep_dir), env, log)
    final.wait(timeout=3600)
    figures["final_resume_rc"] = final.returncode
    figures |= _count(sweep_dir)
    time.sleep(2)
    leftover = subprocess.run(["pgrep", "-f", str(base / "ray")], capture_output=True, text=True).stdout.split()
    figures["ray_processes_left"] = len(leftover)
    if report:
        done = subprocess.run([sys.executable, "-m", "harness.cli", "report", str(sweep_dir)], env=env, cwd=ROOT,
                              capture_output=True, text=True)
        figures["report_ok"] = done.returncode == 0 and (sweep_dir / "report" / "report.html").is_file()
    figures["complete"] = (figures["trials"] == TRIALS and figures["duplicates"] == 0 and figures["rows_lost"] == 0
                           and figures["load_rows"] == TRIALS * EPOCHS and figures["stuck"] == 0
                           and figures["final_resume_rc"] == 0 and figures["ray_processes_left"] == 0
                           and figures.get("report_ok", True))
    if figures["complete"]:
        shutil.rmtree(base, ignore_errors=True)
    else:
        figures["kept"] = str(base)  # for a post-mortem: logs, Parquet and Tune storage
    return figures


def _next_command(run: list[str], sweep_dir: Path) -> list[str]:
    from harness import store

    return ["resume", str(sweep_dir)] if (sweep_dir / store.MANIFEST).is_file() else run


def _recorded(sweep_dir: Path) -> int:
    from harness import store

    return len(store.completed_trial_ids(sweep_dir)) if (sweep_dir / store.MANIFEST).is_file() else 0


def _count(sweep_dir: Path) -> dict:
    """Trials, epoch rows, duplicates and rows lost: in the raw files and via analysis.load."""
    import pyarrow.dataset as ds

    from analysis.load import load
    from harness import store

    trials = store.read_trials(sweep_dir)
    raw = ds.dataset([str(p) for p in (sweep_dir / "epochs").glob("*.parquet") if ".partial." not in p.name],
                     format="parquet").to_table(columns=["trial_id", "iteration"]).to_pandas()
    committed = store.read_epochs(sweep_dir, include_partial=False)
    _, loaded = load(sweep_dir, include_incomplete=False)
    unique = len(committed.drop_duplicates(["trial_id", "iteration"]))
    return {"trials": int(trials["trial_id"].nunique()), "trials_rows": len(trials),
            "epoch_rows": len(committed), "raw_epoch_rows": len(raw),
            "duplicates": (len(committed) - unique) + (len(raw) - len(raw.drop_duplicates())),
            "rows_lost": TRIALS * EPOCHS - unique, "load_rows": len(loaded)}


def bad_inputs() -> tuple[int, int]:
    """(tried, refused correctly): the CLI cases of tests/test_bad_input.py, in process."""
    spec = importlib.util.spec_from_file_location("bad_input_table", ROOT / "tests" / "test_bad_input.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    from harness.cli import main

    ok = 0
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        table._files(root)
        for argv, expected in table.CASES:
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main([a.replace("{root}", str(root)) for a in argv])
            lines = err.getvalue().strip().splitlines()
            locked = "locked.yaml" in " ".join(argv) and os.geteuid() == 0  # root reads it anyway
            ok += locked or (code == 2 and len(lines) == 1 and expected in lines[0])
        return len(table.CASES), ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--kill-min", type=float, default=6.0)
    parser.add_argument("--kill-max", type=float, default=15.0)
    parser.add_argument("--report", action="store_true", help="render the report after every run")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    tried, refused = bad_inputs()
    print(f"bad inputs: {refused} of {tried} refused in one line with exit code 2", flush=True)
    runs = []
    for i in range(args.repeats):
        started = time.monotonic()
        figures = one_run(i, args.kills, args.kill_min, args.kill_max, args.report)
        figures["seconds"] = round(time.monotonic() - started, 1)
        runs.append(figures)
        print(json.dumps(figures), flush=True)
    summary = {
        "runs": len(runs), "runs_complete": sum(r["complete"] for r in runs),
        "kills_survived": sum(r["kills"] for r in runs if r["stuck"] == 0),
        "kills": sum(r["kills"] for r in runs), "stuck_resumes": sum(r["stuck"] for r in runs),
        "trials_completed": sum(r["trials"] for r in runs), "trials_expected": TRIALS * len(runs),
        "duplicates": sum(r["duplicates"] for r in runs), "rows_lost": sum(r["rows_lost"] for r in runs),
        "ray_processes_left": sum(r["ray_processes_left"] for r in runs),
        "bad_inputs_tried": tried, "bad_inputs_refused": refused,
    }
    print("summary: " + json.dumps(summary))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
