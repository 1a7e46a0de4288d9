"""Damaged results and failed writes, on CPU without Ray: the report lists the corrupt
Parquet files it skipped; a diverged trial is left out of every aggregate, table and
figure, and the report says so; a write into a read-only folder, or one that fails
midway, leaves no half-written file and ends in one line naming the folder, exit 2.
docs/reliability.md says what each guarantee covers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import store
from harness.config import TrialConfig
from harness.trial import build_trial

pytestmark = pytest.mark.timeout(300)

TINY = """
name: {name}
dataset: digits
model: mlp
width: 16
epochs: 1
batch_size: 64
lr: 0.1
optimizer: sgd
grid:
  seed: [0, 1]
resources: {{cpu: 1}}
"""


def _run(cfg: TrialConfig):
    """(trial, records) of one trial run to its end in this process."""
    trial = build_trial(cfg)
    return trial, list(trial.records())


def _curves_only(monkeypatch) -> None:
    """Draw one figure: these tests are about the report's words and tables."""
    from analysis import report
    from analysis.figures import FIGURES

    monkeypatch.setattr(report, "FIGURES", tuple(f for f in FIGURES if f.name == "curves_epoch"))


def test_the_report_lists_the_corrupt_files_it_skipped(tmp_path, monkeypatch, capsys):
    from fakes import make_results

    from harness import cli

    _curves_only(monkeypatch)
    sweep = make_results(tmp_path, n_seeds=2, epochs=3)
    damaged = [sorted((sweep / "epochs").glob("*.parquet"))[0], sorted((sweep / "trials").glob("*.parquet"))[-1]]
    for victim in damaged:
        victim.write_bytes(victim.read_bytes()[:100])
    assert cli.main(["report", str(sweep)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("sambench report: skipping unreadable Parquet file ") for line in err)
    text = (sweep / "report" / "report.md").read_text()
    section = text.split("## Skipped files", 1)[1].split("\n## ", 1)[0]
    assert "2 Parquet file(s) of this sweep could not be read" in section
    assert all(f"- {victim}: " in section for victim in damaged)


def _commit(sweep_dir: Path, name: str, runs: list[tuple[TrialConfig, object, list[dict]]]) -> None:
    """Record finished trials through the store, as the sweep driver does."""
    items = [{"trial_id": store.config_id(name, cfg), "trial": cfg.to_dict()} for cfg, _, _ in runs]
    store.write_spec(sweep_dir, f"name: {name}\n", "d" * 40, {"sweep": name, "trials": items})
    for item, (_, trial, records) in zip(items, runs):
        row = store.trial_row(sweep=name, spec_hash="d" * 40, trial_id=item["trial_id"], config=item["trial"],
                              records=records, status=trial.status, error=None, attempts=1, info=trial.info(),
                              node="host/0", provenance=store.provenance())
        store.write_trial(sweep_dir, row, records)


def test_a_diverged_trial_is_left_out_of_tables_and_figures_and_the_report_says_so(tmp_path, monkeypatch):
    import re

    import numpy as np
    import pandas as pd

    from analysis.report import build_report

    _curves_only(monkeypatch)
    base = {"dataset": "digits", "model": "mlp", "width": 16, "epochs": 2, "batch_size": 64, "lr": 0.1}
    configs = [TrialConfig.from_dict({**base, **opt, "seed": seed})
               for opt in ({"optimizer": "sgd"}, {"optimizer": "sam", "rho": 0.05}) for seed in (0, 1)]
    # The only USAM trials: were they drawn or aggregated, a USAM line or row would appear.
    blown = [TrialConfig.from_dict({**base, "optimizer": "usam", "rho": 0.05, "lr": 1e6, "seed": s}) for s in (0, 1)]
    runs = [(cfg, *_run(cfg)) for cfg in [*configs, *blown]]
    assert [trial.status for _, trial, _ in runs] == ["ok"] * 4 + ["diverged"] * 2
    assert runs[-1][2][-1]["train_loss"] is None  # a NaN loss is recorded as a null
    _commit(tmp_path / "with" / "div", "div", runs)
    _commit(tmp_path / "without" / "div", "div", runs[:-2])  # the reference: as if they never ran
    out = {k: build_report(tmp_path / k / "div").parent for k in ("with", "without")}

    text = (out["with"] / "report.md").read_text()
    assert ("Failed trials, left out of every aggregate, table and figure below (only status ok is aggregated "
            "or drawn): 2 (2 diverged).") in text
    assert all(f"- {store.config_id('div', cfg)} (USAM, seed {cfg.seed}): diverged" in text for cfg in blown)
    assert "the 2 failed trial(s) listed under Trials by status are left out, except that" in text
    table_rows = [line for line in text.splitlines() if line.startswith("|")]
    assert table_rows and not [line for line in table_rows if re.search(r"\bnan\b", line, re.I)]
    tables = sorted(p.name for p in (out["with"] / "tables").glob("*.csv"))
    assert "summary_final.csv" in tables
    for name in tables:
        assert not re.search(r"\bnan\b", (out["with"] / "tables" / name).read_text(), re.I), name
        if name == "trials.csv":
            continue
        # Every aggregate is exactly the one without the diverged trial, except that time to
        # target counts it as a seed that never reached the target (time inf: never), so it
        # also names the key the trial varied (lr).
        ours, reference = (pd.read_csv(out[k] / "tables" / name) for k in ("with", "without"))
        if "seeds_reached" in ours:
            never = ours["method"] == "USAM"
            assert never.any() and (ours.loc[never, "seeds_reached"] == 0).all(), name
            assert (ours.loc[never, "seeds"] == 2).all() and np.isinf(ours.loc[never, "time_to_target"]).all()
            ours = ours[~never].reset_index(drop=True)
        assert set(ours.columns) - set(reference.columns) <= {"lr"}, name
        pd.testing.assert_frame_equal(ours[reference.columns], reference, obj=name)
    assert ((out["with"] / "figures" / "curves_epoch.png").read_bytes()
            == (out["without"] / "figures" / "curves_epoch.png").read_bytes())


# -- writes that fail ----------------------------------------------------------------------
def _in_readonly_folder(folder: Path, argv: list[str]) -> list[str]:
    """The command line that runs ``sambench argv`` with ``folder`` read-only for it.
    Permission bits do not stop root, so as root the folder becomes a read-only tmpfs in a
    mount namespace of the command's own (gone when it exits); the test is skipped only
    where root lacks the privilege for that."""
    import shutil

    command = [sys.executable, "-m", "harness.cli", *argv]
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return command
    if not shutil.which("unshare") or subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode:
        pytest.skip("root may not mount here, and permission bits do not stop root")
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs -o ro,size=64k sambench-ro "$0" && exec "$@"', str(folder), *command]


@pytest.mark.parametrize("command", ["run", "report"])
def test_a_readonly_results_folder_is_one_line_naming_it(command, tmp_path):
    from fakes import make_results

    (tmp_path / "spec.yaml").write_text(TINY.format(name="ro"))
    sweep = make_results(tmp_path, n_seeds=1, epochs=2)
    (tmp_path / "ro").mkdir()
    target = tmp_path / "ro" / "results"
    argv = (["run", str(tmp_path / "spec.yaml"), "--results", str(target)] if command == "run"
            else ["report", str(sweep), "--out", str(target)])
    done = subprocess.run(_in_readonly_folder(tmp_path / "ro", argv), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"sambench {command}: error: cannot write into {target}"), done.stderr
    assert not list((tmp_path / "ro").iterdir()) and not (sweep / "report").exists()


def test_a_write_failing_midway_leaves_no_file_and_names_the_folder(tmp_path, monkeypatch, capsys):
    import errno

    import pandas as pd
    from fakes import make_results

    from harness import cli, sweep

    monkeypatch.setattr(sweep, "_join_cluster", lambda *args: None)  # no trial runs: no Ray needed

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # run: the spec and manifest are written (fsync fails once the bytes are out) before any trial runs.
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(TINY.format(name="full"))
    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", disk_full)
        assert cli.main(["run", str(spec_file), "--results", str(tmp_path / "results")]) == 2
    sweep_dir = tmp_path / "results" / "full"
    err = capsys.readouterr().err
    assert err == f"sambench run: error: cannot write spec.yaml into {sweep_dir}: No space left on device\n"
    assert [p.name for p in sweep_dir.iterdir()] == [".lock"]

    # report: a table half written when the disk fills.
    _curves_only(monkeypatch)
    done = make_results(tmp_path, n_seeds=1, epochs=2)

    def half_then_full(self, handle, **kwargs):
        handle.write("trial_id,method\n")
        disk_full()

    with monkeypatch.context() as patch:
        patch.setattr(pd.DataFrame, "to_csv", half_then_full)
        assert cli.main(["report", str(done)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sambench report: error: cannot write ") and err.count("\n") == 1
    assert f"into {done / 'report' / 'tables'}: No space left on device" in err
    left = [p.relative_to(done / "report").as_posix() for p in (done / "report").rglob("*") if p.is_file()]
    assert left == ["figures/curves_epoch.png"]  # complete: each file appears whole or not at all
