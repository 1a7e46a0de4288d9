"""The sambench command as a user meets it: help, version, exit codes, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness import __version__
from harness.cli import main

from fakes import make_results


def test_console_script_is_installed_and_prints_version():
    out = subprocess.run([sys.executable, "-m", "harness.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"sambench {__version__}"


def test_help_lists_every_command(capsys):
    assert main([]) == 0
    text = capsys.readouterr().out
    for command in ("train", "validate", "run", "resume", "ls", "report"):
        assert command in text


def test_validate_prints_the_trial_table(capsys):
    assert main(["validate", "benchmarks/quick.yaml"]) == 0
    assert capsys.readouterr().out.strip().endswith("102 trials")


@pytest.mark.parametrize("argv,field", [
    (["validate", "benchmarks/quick.yaml", "--set", "lam=2"], "lam"),
    (["validate", "benchmarks/quick.yaml", "--set", "optimizer=adam"], "optimizer"),
    (["validate", "benchmarks/quick.yaml", "--set", "resources.gpu=-1"], "resources.gpu"),
    (["validate", "no/such/spec.yaml"], "no/such/spec.yaml"),
    (["train", "--set", "dataset=imagenet", "--set", "lr=0.1", "--set", "epochs=1"], "dataset"),
    (["train", "--set", "epochs=0"], "epochs"),
    (["ls", "no/such/sweep"], "no/such/sweep"),
    (["resume", "no/such/sweep"], "no/such/sweep"),
    (["report", "no/such/sweep"], "no/such/sweep"),
])
def test_user_errors_are_one_line_with_exit_code_2(argv, field, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in captured.err
    assert captured.err.startswith(f"sambench {argv[0]}: error: ")


def test_train_prints_a_line_per_epoch(capsys):
    assert main(["train", "--set", "dataset=digits", "--set", "model=mlp", "--set", "width=16",
                 "--set", "lr=0.1", "--set", "epochs=2", "--set", "optimizer=sam",
                 "--set", "rho=0.05"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("trial: digits/mlp sam") and lines[-1] == "status: ok"
    assert [line.split()[:2] for line in lines[1:-1]] == [["epoch", "1"], ["epoch", "2"]]
    assert all("test_acc" in line for line in lines[1:-1])


def test_train_reads_a_yaml_config(tmp_path, capsys):
    config = tmp_path / "trial.yaml"
    config.write_text("dataset: ridge\nmodel: linear\nreg: 1e-2\noptimizer: usam\nstep_rule: v2\n"
                      "sampler: full\nbatch_size: 100\niterations: 200\n")
    assert main(["train", str(config), "--set", "eval_every=100"]) == 0
    out = capsys.readouterr().out
    assert "it 200" in out and "rel_subopt" in out


def test_ls_summarises_a_sweep(tmp_path, capsys):
    sweep = make_results(tmp_path, n_seeds=2, epochs=3, diverged=True, incomplete=True)
    assert main(["ls", str(sweep), "--trials"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sweep fake-sweep") and "diverged 1" in out and "best on" in out
