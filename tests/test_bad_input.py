"""Every bad input to the command line ends the same way: one line on stderr naming the
field or path, the value and what is allowed; exit code 2; no traceback; nothing written
anywhere. The table below is the contract; the last test puts a wrong type into every
trial key, so a key added later is covered too."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.cli import main
from harness.config import ConfigError, TrialConfig
from harness.config_doc import key_table

SPEC = """name: bad
dataset: digits
model: mlp
optimizer: sgd
epochs: 1
lr: 0.1
"""
LAUGHS = "name: lol\nx0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 10)}]\n" for i in range(1, 10)) + "lr: *x9\n"


def _files(root: Path) -> None:
    """The inputs: files and folders a user might hand to sambench by mistake."""
    (root / "folder").mkdir()
    (root / "binary.yaml").write_bytes(b"name: x\n\xff\xfe\x00\x81 binary\n")
    (root / "list.yaml").write_text("- dataset\n- digits\n")
    (root / "python.yaml").write_text("lr: !!python/object/apply:os.system ['touch pwned']\n")
    (root / "laughs.yaml").write_text(LAUGHS)
    (root / "dangling.yaml").symlink_to(root / "no-such-target.yaml")
    (root / "locked.yaml").write_text(SPEC)
    (root / "locked.yaml").chmod(0)
    (root / "a-file").write_text("not a folder\n")
    (root / "empty-sweep").mkdir()
    (root / "not-a-sweep").mkdir()
    (root / "not-a-sweep" / "notes.txt").write_text("hello\n")
    for name, body in (("old-sweep", json.dumps({"schema_version": 99, "manifest": {"trials": []}})),
                       ("garbled-sweep", "\x00{not json")):
        (root / name).mkdir()
        (root / name / "sweep.json").write_text(body)
    specs = {
        "typo-key": SPEC + "epoch: 3\n",
        "typo-grid-key": SPEC.replace("optimizer: sgd\n", "") + "grid:\n  optimiser: [sgd, sam]\n",
        "empty-axis": SPEC + "grid:\n  seed: []\n",
        "empty-blocks": SPEC.replace("optimizer: sgd\n", "") + "grid:\n  blocks: []\n",
        "gpu": SPEC + "resources: {gpu: 1}\n",
        "fraction-gpu": SPEC + "resources: {gpu: 1.5}\n",
        "bad-name": SPEC.replace("name: bad", "name: ../escape"),
        "duplicate": SPEC + "lr: 0.2\n",
        "list-at-top": SPEC + "seed: [0, 1]\n",
        "missing-data": SPEC.replace("digits", "cifar10") + f"data_root: {root / 'no-data-here'}\n",
    }
    for name, text in specs.items():
        (root / f"{name}.yaml").write_text(text)


SGD = ["--set", "optimizer=sgd"]  # so that each case fails on its own key alone

# (argv with {root} for the input folder, text the error line must contain)
CASES = [
    # train: keys, types, ranges and names
    (["train", "--set", "epoch=3"], "did you mean 'epochs'?"),
    (["train", "--set", "optimizer=adam"], "optimizer: 'adam'"),
    (["train", *SGD, "--set", "lr=-1"], "lr: -1"),
    (["train", *SGD, "--set", "lr=fast"], "lr: 'fast'"),
    (["train", *SGD, "--set", "epochs=0"], "epochs: 0"),
    (["train", *SGD, "--set", "epochs=1.5"], "epochs: 1.5"),
    (["train", *SGD, "--set", "batch_size=true"], "batch_size: True"),
    (["train", *SGD, "--set", "momentum=1"], "momentum: 1"),
    (["train", "--set", "optimizer=unified", "--set", "lam=2", "--set", "rho=0.1"], "lam: 2"),
    (["train", *SGD, "--set", "dataset=imagenet"], "dataset: 'imagenet'"),
    (["train", *SGD, "--set", "model=transformer"], "model: 'transformer'"),
    (["train", *SGD, "--set", "sampler=random"], "sampler: 'random'"),
    (["train", *SGD, "--set", "lr_schedule=linear"], "lr_schedule: 'linear'"),
    (["train", *SGD, "--set", "seed=-1"], "seed: -1"),
    (["train", *SGD, "--set", "sharpness.often=1"], "sharpness.often"),
    (["train", *SGD, "--set", "epochs=1", "--set", "iterations=10"], "exactly one of epochs or iterations"),
    (["train", "--set", "lr"], "key=value"),
    (["train", *SGD, "--set", "dataset=cifar10"], "data_root: None"),
    (["train", *SGD, "--set", "dataset=cifar10", "--set", "data_root={root}/no-data-here"], "no-data-here"),
    (["train", *SGD, "--set", "device=cuda"], "device: 'cuda'"),
    # train: files
    (["train", "{root}/folder"], "this is a folder"),
    (["train", "{root}/binary.yaml"], "a UTF-8 text file"),
    (["train", "{root}/dangling.yaml"], "dangling.yaml"),
    (["train", "{root}/list.yaml"], "a YAML mapping of trial config keys"),
    (["train", "{root}/python.yaml"], "python/object/apply:os.system"),
    (["train", "{root}/laughs.yaml"], "once anchors are expanded"),
    (["train", "{root}/no-such.yaml"], "no-such.yaml"),
    # validate: files and spec structure
    (["validate", "{root}/no-such.yaml"], "no-such.yaml"),
    (["validate", "{root}/folder"], "this is a folder"),
    (["validate", "{root}/binary.yaml"], "byte 0xff at offset 8"),
    (["validate", "{root}/python.yaml"], "python/object/apply:os.system"),
    (["validate", "{root}/laughs.yaml"], "once anchors are expanded"),
    (["validate", "{root}/locked.yaml"], "locked.yaml"),
    (["validate", "{root}/typo-key.yaml"], "epoch: 3"),
    (["validate", "{root}/typo-grid-key.yaml"], "did you mean 'optimizer'?"),
    (["validate", "{root}/empty-axis.yaml"], "grid.seed: []"),
    (["validate", "{root}/empty-blocks.yaml"], "grid.blocks: []"),
    (["validate", "{root}/fraction-gpu.yaml"], "resources.gpu: 1.5"),
    (["validate", "{root}/bad-name.yaml"], "name: '../escape'"),
    (["validate", "{root}/duplicate.yaml"], "each key once per mapping"),
    (["validate", "{root}/list-at-top.yaml"], "lists go under grid.seed"),
    (["validate", "{root}/missing-data.yaml"], "no-data-here"),
    (["validate", "{root}/gpu.yaml", "--set", "optimizer=adam"], "optimizer: 'adam'"),
    # run: refused before anything is written (no results folder, no Ray started)
    (["run", "{root}/no-such.yaml", "--results", "{root}/results"], "no-such.yaml"),
    (["run", "{root}/binary.yaml", "--results", "{root}/results"], "a UTF-8 text file"),
    (["run", "{root}/gpu.yaml", "--results", "{root}/results"], "resources.gpu: 1.0"),
    (["run", "{root}/typo-key.yaml", "--results", "{root}/results"], "did you mean 'epochs'?"),
    # resume, ls, report: folders that are not sweeps, or not this version's
    (["resume", "{root}/no-such-sweep"], "does not exist"),
    (["resume", "{root}/a-file"], "is a file, not a sweep folder"),
    (["resume", "{root}/empty-sweep"], "interrupted before it started"),
    (["resume", "{root}/not-a-sweep"], "is not a sambench sweep folder"),
    (["resume", "{root}/old-sweep"], "schema_version 99"),
    (["resume", "{root}/garbled-sweep"], "unreadable"),
    (["ls", "{root}/no-such-sweep"], "does not exist"),
    (["ls", "{root}/not-a-sweep"], "is not a sambench sweep folder"),
    (["ls", "{root}/old-sweep"], "schema_version 99"),
    (["report", "{root}/empty-sweep"], "interrupted before it started"),
    (["report", "{root}/not-a-sweep"], "is not a sambench sweep folder"),
    (["report", "{root}/old-sweep"], "schema_version 99"),
    (["report", "{root}/a-file"], "is a file, not a sweep folder"),
]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("inputs")
    _files(root)
    return root


def test_the_table_is_large_enough():
    assert len(CASES) >= 40
    assert {argv[0] for argv, _ in CASES} == {"train", "validate", "run", "resume", "ls", "report"}


@pytest.mark.parametrize("argv,expected", CASES, ids=[" ".join(a).replace("{root}/", "") for a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, expected, inputs, tmp_path, monkeypatch, capsys):
    if "locked.yaml" in " ".join(argv) and os.geteuid() == 0:
        pytest.skip("root reads a file without read permission")
    monkeypatch.chdir(tmp_path)  # a default results folder would land here
    before, cwd_before = _snapshot(inputs), _snapshot(tmp_path)
    code = main([arg.replace("{root}", str(inputs)) for arg in argv])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured
    assert len(lines) == 1 and lines[0].startswith(f"sambench {argv[0]}: error: "), captured.err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert _snapshot(inputs) == before and _snapshot(tmp_path) == cwd_before
    assert not (inputs / "pwned").exists() and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("key", [row[0] for row in key_table()])
def test_every_trial_key_refuses_a_wrong_type(key):
    """A mapping is no valid value of any key (a list none of the two keys that take a
    mapping of keyword arguments); the error names the key."""
    wrong = [1, 2] if key.endswith("optimizer_args") else {"x": 1}
    with pytest.raises(ConfigError) as err:
        TrialConfig.from_dict({"optimizer": "sgd", key: wrong})
    assert err.value.field == key and repr(wrong) in str(err.value)
