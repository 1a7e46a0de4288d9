"""Every shipped spec validates, and the GPU specs pass their CPU smoke mode (FakeData,
one epoch on a handful of images), so a broken spec is caught here, not on a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.spec import load_spec
from harness.trial import run_trial

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
DEEP = sorted((BENCHMARKS / "deep").glob("*.yaml"))
# The smoke mode documented in benchmarks/deep/README.md.
SMOKE = ["fake_data=true", "epochs=1", "train_subset=8", "test_subset=8", "batch_size=8",
         "grid.seed=[0]", "resources.gpu=0", "sharpness.every=0"]


@pytest.mark.parametrize("path,count", [
    ("quick.yaml", 102),
    ("paper/fig1_deterministic.yaml", 11),
    ("paper/fig2_decreasing.yaml", 50),  # 30 theory + 20 as published
    ("paper/fig3_importance.yaml", 30),
])
def test_cpu_specs_validate(path, count):
    assert len(load_spec(BENCHMARKS / path).trials) == count


@pytest.mark.parametrize("path", DEEP, ids=lambda p: p.stem)
def test_gpu_specs_validate_with_a_data_root(path, tmp_path):
    spec = load_spec(path, [f"data_root={tmp_path}"])
    assert len(spec.trials) == 63  # (4 rho x 5 lam + SGD) x 3 seeds, the paper's grid
    assert spec.resources["gpu"] > 0
    first = spec.trials[0]
    assert (first.epochs, first.batch_size, first.lr, first.momentum, first.weight_decay) == (200, 128, 0.1, 0.9, 5e-4)
    assert first.lr_schedule == "cosine" and first.augment is None  # None: crop + flip on CIFAR


@pytest.mark.parametrize("path", DEEP, ids=lambda p: p.stem)
def test_gpu_specs_smoke_on_cpu(path):
    # WideResNet-28-10 takes ~15 s a SAM step on 8 CPU images: CI shrinks it to WRN-10-2,
    # the same code path; PreActResNet-18 runs as specified.
    extra = ["depth=10", "width=2"] if "wrn" in path.stem else []
    spec = load_spec(path, SMOKE + extra)
    assert len(spec.trials) == 21
    trial = next(cfg for cfg in spec.trials if cfg.optimizer != "sgd")  # unified, or vasso (Unified VaSSO)
    records = list(run_trial(trial))
    assert len(records) == 1 and records[0]["grad_evals"] == 2 and records[0]["test_acc"] is not None
