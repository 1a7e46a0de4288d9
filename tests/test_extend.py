"""``sambench run SPEC --extend``: the difference from the stored spec, recorded trials
reused, only new trials run, and a one-line refusal of a change that drops recorded trials."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness import store
from harness.extend import ExtendError, plan_extension, spec_changes
from harness.records import new_record
from harness.spec import parse_spec

SPEC = textwrap.dedent("""
    name: ext
    description: first
    dataset: digits
    model: mlp
    width: 8
    epochs: 1
    batch_size: 128
    lr: 0.1
    grid:
      optimizer: [sgd, sam]
      rho: [0.05]
      seed: [0]
    resources: {cpu: 1}
""")


def _recorded_sweep(root: Path, text: str = SPEC, record: int | None = None) -> Path:
    """A sweep folder as `run` leaves it: spec, manifest and (the first ``record``) trials
    committed with one fake evaluation each; no training."""
    spec = parse_spec(text)
    sweep_dir = root / spec.name
    entries = [{"trial_id": store.config_id(spec.name, c), "trial": c.to_dict()} for c in spec.trials]
    store.write_spec(sweep_dir, spec.text, spec.spec_hash, {
        "sweep": spec.name, "spec_hash": spec.spec_hash, "storage": str(sweep_dir / "tune"),
        "resources": spec.resources, "max_failures": 0, "max_concurrent": None, "trials": entries})
    for entry in entries[:record]:
        records = [new_record(epoch=1.0, iteration=11, test_acc=0.5, train_loss=1.0)]
        row = store.trial_row(sweep=spec.name, spec_hash=spec.spec_hash, trial_id=entry["trial_id"],
                              config=entry["trial"], records=records, status="ok", error=None, attempts=1,
                              info={}, node="n", provenance={})
        store.write_trial(sweep_dir, row, records)
    return sweep_dir


def test_adding_a_seed_keeps_the_recorded_trials_and_runs_only_new_ones(tmp_path):
    sweep_dir = _recorded_sweep(tmp_path)
    grown = SPEC.replace("seed: [0]", "seed: [0, 1]").replace("first", "second").replace("cpu: 1", "cpu: 2")
    plan = plan_extension(sweep_dir, parse_spec(grown))
    assert plan.changes == [("description", "first", "second"), ("grid.seed", [0], [0, 1]),
                            ("resources.cpu", 1.0, 2.0)]
    assert len(plan.kept) == 2 and len(plan.new) == 2
    assert {e["trial"]["seed"] for e in plan.new} == {1}
    assert {e["trial_id"] for e in plan.kept} == store.completed_trial_ids(sweep_dir)
    assert plan.manifest["resources"] == {"cpu": 2.0, "gpu": 0.0} and len(plan.manifest["trials"]) == 4
    assert plan.summary().splitlines() == [
        "extend ext: spec changes", "  description: 'first' -> 'second'", "  grid.seed: [0] -> [0, 1]",
        "  resources.cpu: 1.0 -> 2.0", "4 trials: 2 recorded and kept, 2 new to run"]


def test_a_description_or_resources_change_invalidates_nothing(tmp_path):
    sweep_dir = _recorded_sweep(tmp_path)
    plan = plan_extension(sweep_dir, parse_spec(SPEC, ["description=other", "resources.cpu=4", "max_failures=2"]))
    assert len(plan.kept) == 2 and plan.new == []
    assert [path for path, _, _ in plan.changes] == ["description", "resources.cpu", "max_failures"]


@pytest.mark.parametrize("override, reason", [
    ("epochs=2", "changed: epochs: 1 -> 2"),
    ("grid.optimizer=[sam]", "changed: grid.optimizer: ['sgd', 'sam'] -> ['sam']"),
])
def test_a_change_that_drops_recorded_trials_is_refused_in_one_line(tmp_path, override, reason):
    sweep_dir = _recorded_sweep(tmp_path)
    before = store.read_spec(sweep_dir)
    with pytest.raises(ExtendError) as info:
        plan_extension(sweep_dir, parse_spec(SPEC, [override]))
    message = str(info.value)
    assert reason in message and "--extend only adds trials" in message and "\n" not in message
    assert store.read_spec(sweep_dir) == before


def test_an_unfinished_sweep_must_be_resumed_first(tmp_path):
    sweep_dir = _recorded_sweep(tmp_path, record=1)
    with pytest.raises(ExtendError, match=r"1 of the 2 trials .* `sambench resume"):
        plan_extension(sweep_dir, parse_spec(SPEC, ["grid.seed=[0,1]"]))


def test_spec_changes_compares_blocks_item_by_item():
    old = parse_spec("name: a\nepochs: 1\nlr: 0.1\ngrid: [{optimizer: sgd}, {optimizer: sam, rho: [0.1]}]\n")
    new = parse_spec("name: a\nepochs: 1\nlr: 0.1\ngrid: [{optimizer: sgd}, {optimizer: sam, rho: [0.1, 0.2]}]\n")
    assert spec_changes(old.text, new.text) == [("grid.blocks[1].rho", [0.1], [0.1, 0.2])]


@pytest.fixture
def ray_of_the_cli():
    """The CLI starts a local Ray in this process; shut it down for the tests after."""
    yield
    import ray

    ray.shutdown()


def test_extend_on_ray_runs_only_the_new_trials(tmp_path, capsys, ray_of_the_cli):
    """End to end through the CLI: a recorded sweep grows by one seed; the kept trials'
    files are untouched, the new ones are committed and their checkpoints deleted."""
    from harness.cli import main

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(SPEC)
    sweep_dir = _recorded_sweep(tmp_path / "results")
    kept = {p.name: p.stat().st_mtime_ns for p in (sweep_dir / "trials").glob("*.parquet")}
    assert main(["run", str(spec_file), "--results", str(tmp_path / "results")]) == 0  # nothing to run
    argv = ["run", str(spec_file), "--results", str(tmp_path / "results"), "--extend", "--set", "grid.seed=[0,1]"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "  grid.seed: [0] -> [0, 1]" in out and "2 recorded and kept, 2 new to run" in out
    lines = out.splitlines()
    final = [i for i, line in enumerate(lines) if "4/4 recorded" in line]
    assert final and lines[final[0] + 1].startswith("sweep ext ")  # the summary on its own line
    trials = store.read_trials(sweep_dir)
    assert len(trials) == 4 and set(trials["status"].astype(str)) == {"ok"}
    assert {p.name: p.stat().st_mtime_ns for p in (sweep_dir / "trials").glob("*.parquet") if p.name in kept} == kept
    kept_files = sorted({p.name for p in (sweep_dir / "tune").rglob("checkpoint_*/*")})
    assert kept_files == ["records.json", "trial.json"]  # the model and optimizer state are gone
    assert store.read_manifest(sweep_dir)["spec_hash"] == parse_spec(SPEC, ["grid.seed=[0,1]"]).spec_hash
