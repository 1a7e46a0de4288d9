"""Datasets and models from outside the package, by import path: the worked example of
docs/extending.md run as written, and the meta-device check that catches a model that
cannot take its dataset's inputs before any work."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from harness.cli import main

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "extending.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(), flags=re.S)


@pytest.fixture
def example(tmp_path, monkeypatch):
    """The guide's ``mypkg`` package and ``moons.yaml`` spec, written from the guide itself."""
    for block in _blocks("python"):
        first = block.splitlines()[0]
        if first.startswith("# mypkg/"):
            path = tmp_path / first[2:].strip()
            path.parent.mkdir(exist_ok=True)
            path.write_text(block)
    spec = next(b for b in _blocks("yaml") if b.startswith("name: moons"))
    (tmp_path / "moons.yaml").write_text(spec)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m == "mypkg" or m.startswith("mypkg.")]:
        del sys.modules[name]


def test_the_guides_worked_example_validates_and_trains(example, capsys):
    assert main(["validate", str(example / "moons.yaml")]) == 0
    assert capsys.readouterr().out.rstrip().endswith("9 trials")
    argv = ["train", str(example / "moons.yaml"), "--trial", "3", "--set", "epochs=2", "--set", "sharpness.every=0"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "trial: mypkg.data:load/mypkg.models:build unified lam=0.5" in out
    accuracy = [float(a) for a in re.findall(r"test_acc (\S+)", out)]
    assert len(accuracy) == 2 and accuracy[-1] > 0.75  # two moons are easy; chance is 0.5
    assert out.rstrip().endswith("status: ok")


def test_a_plugin_dataset_feeds_a_registered_model(example, capsys):
    assert main(["train", "--set", "dataset=mypkg.data:load", "--set", "model=mlp", "--set", "epochs=1",
                 "--set", "lr=0.1", "--set", "train_subset=256"]) == 0
    assert "status: ok" in capsys.readouterr().out


@pytest.mark.parametrize("override, fragment", [
    ("dataset=mypkg.data:lod", "allowed: an attribute that exists ('mypkg.data' has no 'lod')"),
    ("model=mypkg.nomodule:build", "importing 'mypkg.nomodule' failed"),
    ("model=mypkg.data:N_TRAIN", "a callable builder"),
    ("dataset=tests_bad_loader:load", "a loader that returns harness.data.ClassificationData (it returned tuple)"),
])
def test_plugin_mistakes_are_one_line(example, capsys, override, fragment):
    (example / "tests_bad_loader.py").write_text("def load(cfg, device):\n    return (1, 2)\n")
    field = override.split("=")[0]
    assert main(["train", str(example / "moons.yaml"), "--trial", "0", "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sambench train: error: {field}: ") and fragment in err and err.count("\n") == 1


@pytest.mark.parametrize("overrides, fragment", [
    (["dataset=mnist1d", "model=wrn"], "wrn needs (C, H, W) images (try mlp or cnn) [dataset mnist1d]"),
    (["dataset=mnist1d", "model=cnn", "width=8"], None),
    (["dataset=digits", "model=tests_heads:unflattened"], "(its forward pass fails: a and b must have same reduction dim"),
    (["dataset=digits", "model=tests_heads:three_logits"],
     "a model with 10 outputs per example (it gives (2, 3) for a batch of 2) [dataset digits]"),
])
def test_validate_builds_each_model_on_the_meta_device(example, capsys, overrides, fragment):
    (example / "tests_heads.py").write_text(
        "from torch import nn\n\n"
        "def unflattened(input_shape, num_classes, width, depth):\n"
        "    return nn.Linear(7, num_classes)\n\n"
        "def three_logits(input_shape, num_classes, width, depth):\n"
        "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(3))\n")
    argv = ["validate", str(example / "moons.yaml")] + [item for o in overrides for item in ("--set", o)]
    code = main(argv)
    captured = capsys.readouterr()
    if fragment is None:
        assert code == 0, captured.err
    else:
        assert code == 2 and fragment in captured.err and captured.err.count("\n") == 1
