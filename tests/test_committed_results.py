"""Committed results still belong to their specs: rerunning a committed spec into its
folder (``make theory``, the zoo, the tuned benchmark) must find every recorded trial under
the id the current code computes, or it would run them again and record them twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import store
from harness.config import LATER_KEYS, TrialConfig
from harness.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted(p.parent for p in ROOT.glob("benchmarks/*/results/*/sweep.json"))


@pytest.mark.parametrize("sweep_dir", SWEEPS, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_committed_grid_trials_keep_their_ids(sweep_dir: Path):
    spec = load_spec(sweep_dir / "spec.yaml", [])
    ids = {store.config_id(spec.name, cfg) for cfg in spec.trials}
    grid = {t["trial_id"] for t in store.read_manifest(sweep_dir)["trials"]
            if t.get("tags", {}).get("phase") in (None, "grid")}
    recorded = set(store.trials_table([sweep_dir]).column("trial_id").to_pylist())
    assert ids == grid and ids <= recorded


def test_a_later_key_at_its_default_leaves_the_id_unchanged():
    cfg = TrialConfig.from_dict({"dataset": "digits", "model": "mlp", "optimizer": "sam", "rho": 0.05,
                                 "lr": 0.1, "epochs": 2})
    before = {k: v for k, v in cfg.to_dict().items() if k not in LATER_KEYS}  # as recorded before they existed
    assert store.config_id("s", cfg) == store.trial_id("s", cfg.identity())
    assert store.trial_id("s", before) == store.config_id("s", cfg)
    assert store.config_id("s", cfg.replace(val_fraction=0.2)) != store.config_id("s", cfg)
