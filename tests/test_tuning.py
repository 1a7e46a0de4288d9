"""Equal-budget tuning: the tune: section's validation, reproducible random suggestions,
and one small run end to end (phases, tags, exactly once, winners chosen on validation)."""

from __future__ import annotations

import textwrap

import pytest

from harness.spec import SpecError, parse_spec
from harness.tune_spec import TuneSection

SPEC = """
name: tiny-tune
dataset: digits
model: mlp
width: 16
epochs: 1
train_subset: 300
val_fraction: 0.2
tune:
  budget: 3
  seed: 7
  final_seeds: [0, 1]
  space:
    lr: {loguniform: [0.01, 0.5]}
  blocks:
    - optimizer: sgd
    - optimizer: sam
      space: {rho: {uniform: [0.01, 0.2]}}
"""


def _spec(overrides=()):
    return parse_spec(textwrap.dedent(SPEC), overrides)


def test_tune_section_expands_to_one_search_per_method_and_workload():
    spec = _spec()
    assert spec.trials == []  # tune: instead of grid: means no grid trials
    section = spec.tune
    assert [s.search_id for s in section.searches] == ["digits-mlp-sgd", "digits-mlp-sam"]
    assert [[d.key for d in s.space] for s in section.searches] == [["lr"], ["lr", "rho"]]
    assert section.metric == "val_acc" and section.mode == "max" and section.searcher == "random"
    assert TuneSection.from_dict(section.to_dict()) == section  # the manifest round trip
    both = parse_spec(textwrap.dedent(SPEC).replace("  blocks:", "  dataset: [digits, mnist1d]\n  blocks:")
                      .replace("dataset: digits\n", ""))
    assert len(both.tune.searches) == 4
    assert _spec(overrides=["tune.budget=5"]).tune.searches[0].budget == 5


@pytest.mark.parametrize("override, field, allowed", [
    ("tune.metric=test_acc", "tune.metric", "would tune on the test set"),
    ("tune.searcher=grid", "tune.searcher", "random, tpe"),
    ("tune.scheduler=hyperband", "tune.scheduler", "none, asha"),
    ("tune.budget=0", "tune.budget", "an integer >= 1"),
    ("tune.final_seeds=[]", "tune.final_seeds", "non-empty list"),
    ("tune.space={lr: {loguniform: [0, 1]}}", "tune.space.lr.loguniform", "0 < low < high"),
    ("tune.space={lr: {normal: [0, 1]}}", "tune.space.lr", "loguniform"),
    ("tune.space={lrr: {uniform: [0, 1]}}", "tune.space.lrr", "a trial config key"),
    ("tune.colour=red", "tune.colour", "a trial config key"),
])
def test_bad_tune_settings_are_one_line_errors(override, field, allowed):
    with pytest.raises(SpecError) as err:
        _spec(overrides=[override])
    message = str(err.value)
    assert message.startswith(field + ":") and allowed in message and "\n" not in message


def test_searching_a_key_the_method_fixes_or_an_invalid_corner_is_refused():
    with pytest.raises(SpecError, match=r"^tune.blocks\[0\].space.rho: .*sgd does not fix"):
        parse_spec(textwrap.dedent(SPEC).replace("- optimizer: sgd", "- optimizer: sgd\n      space: {rho: {uniform: [0.1, 0.2]}}"))
    with pytest.raises(SpecError, match=r"^tune.blocks\[1\].space.rho: .*>= 0"):
        parse_spec(textwrap.dedent(SPEC).replace("uniform: [0.01, 0.2]", "uniform: [-0.1, 0.2]"))


def test_a_validation_metric_needs_a_validation_split():
    with pytest.raises(SpecError) as err:
        parse_spec(textwrap.dedent(SPEC).replace("val_fraction: 0.2\n", ""))
    assert str(err.value).startswith("val_fraction: 0 is not valid") and "validation split" in str(err.value)


def test_random_suggestions_are_reproducible_from_the_spec():
    from harness.search import suggestions

    first = [suggestions(_spec().tune, s) for s in _spec().tune.searches]
    again = [suggestions(_spec().tune, s) for s in _spec().tune.searches]
    assert first == again and len(first[1]) == 3
    assert first[0] != [{"lr": s["lr"]} for s in first[1]]  # each search has its own stream
    other = suggestions(_spec(overrides=["tune.seed=8"]).tune, _spec().tune.searches[1])
    assert other != first[1]
    for sampled in first[1]:
        assert 0.01 <= sampled["lr"] <= 0.5 and 0.01 <= sampled["rho"] <= 0.2


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_tuning_run_is_tagged_exactly_once_and_selects_on_validation(tmp_path, local_ray, capsys):
    from harness import store
    from harness.search import suggestions
    from harness.sweep import SweepOptions
    from harness.tuning import resume_tuning, run_tuning, winners

    spec = _spec(overrides=["tune.budget=2", "tune.final_seeds=[0]"])
    sweep_dir = run_tuning(spec, tmp_path, SweepOptions(quiet=True))
    trials = store.read_trials(sweep_dir)
    tune_rows = trials[trials["phase"].astype(str) == "tune"]
    final_rows = trials[trials["phase"].astype(str) == "final"]
    assert len(tune_rows) == 4 and len(final_rows) == 2 and (trials["status"].astype(str) == "ok").all()
    assert sorted(tune_rows.groupby("search_id", observed=True).size().tolist()) == [2, 2]
    # the trials ran exactly the suggestions the spec's seed gives
    sam = tune_rows[tune_rows["search_id"].astype(str) == "digits-mlp-sam"].sort_values("search_index")
    expected = suggestions(spec.tune, spec.tune.searches[1])
    assert sam["lr"].tolist() == pytest.approx([s["lr"] for s in expected])
    # each winner is the best validation trial of its search, and its rerun keeps its hyperparameters
    chosen = winners(sweep_dir, spec.tune)
    epochs = store.read_epochs(sweep_dir)
    for search_id, win in chosen.items():
        ids = tune_rows.loc[tune_rows["search_id"].astype(str) == search_id, "trial_id"].astype(str)
        vals = epochs[epochs["trial_id"].astype(str).isin(ids)].groupby("trial_id", observed=True)["val_acc"].last()
        assert win["value"] == vals.max()
        rerun = final_rows[final_rows["search_id"].astype(str) == search_id]
        assert rerun["lr"].tolist() == pytest.approx([win["config"]["lr"]])
    # nothing left: resume says so and writes nothing
    before = store.read_trials(sweep_dir)["finished_at"].tolist()
    capsys.readouterr()
    resume_tuning(sweep_dir, SweepOptions(quiet=True))
    assert "nothing to resume" in capsys.readouterr().out
    assert store.read_trials(sweep_dir)["finished_at"].tolist() == before
    # the report's tuned comparison: winners with their reruns, a sensitivity line, the figure
    import analysis
    from analysis.document import Document
    from analysis.tuned import tuned_section

    trials, epochs = analysis.load(sweep_dir)
    doc, tables = Document("t"), {}
    tuned_section(doc, sweep_dir, trials, epochs, tmp_path / "report", "png", tables)
    winners_table = tables["tuned_winners"].set_index("search")
    assert set(winners_table.index) == {"digits-mlp-sgd", "digits-mlp-sam"}
    assert (winners_table["seeds"] == 1).all() and winners_table["chosen"].str.contains("lr=").all()
    assert "Sensitivity" in doc.markdown() and "the same budget of 2 trials" in doc.markdown()
    assert (tmp_path / "report" / "figures" / "tuned_best_so_far.png").stat().st_size > 0
