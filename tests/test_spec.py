"""Sweep specs: grid expansion, drops and dedupe, blocks, overrides, hashes and errors."""

from __future__ import annotations

from collections import Counter

import pytest

from harness.config import ConfigError
from harness.spec import SPEC_KEYS, SpecError, apply_overrides, load_spec, parse_spec

EXAMPLE = """
name: digits-lam
dataset: digits
model: mlp
epochs: 20
lr: 0.1
grid:
  optimizer: [sgd, sam, usam, unified]
  lam: [0.25, 0.5, 0.75]
  rho: [0.05, 0.1]
  sampler: [reshuffle, importance]
  seed: [0, 1, 2]
resources: {cpu: 1, gpu: 0.25}
max_failures: 2
"""

BLOCKS = """
name: sgd-vs-unified
dataset: digits
model: mlp
epochs: 2
lr: 0.1
grid:
  seed: [0, 1, 2]
  blocks:
    - optimizer: sgd
    - optimizer: unified
      rho: [0.1, 0.2]
      lam: [0, 0.5, 1, "1/t", "1-1/t"]
"""

SMALL = """
name: small
dataset: digits
model: mlp
epochs: 1
lr: 0.1
"""


SMALL_SGD = SMALL + "optimizer: sgd\n"  # the default optimizer is sam


def _small(grid: str = "", **extra: str) -> str:
    lines = [SMALL] + [f"{key}: {value}" for key, value in extra.items()]
    return "\n".join(lines) + (f"\ngrid:\n{grid}" if grid else "")


# -- expansion -----------------------------------------------------------------------------
def test_example_expands_to_66_trials_without_meaningless_combinations():
    spec = parse_spec(EXAMPLE)
    assert len(spec.trials) == 66
    assert Counter(t.optimizer for t in spec.trials) == {"sgd": 6, "sam": 12, "usam": 12, "unified": 36}
    assert len(set(spec.trials)) == 66
    sgd = [t for t in spec.trials if t.optimizer == "sgd"]
    assert {(t.rho, t.lam) for t in sgd} == {(0.0, None)}
    assert {(t.lam, t.rho) for t in spec.trials if t.optimizer == "sam"} == {(1.0, 0.05), (1.0, 0.1)}
    assert {t.lam for t in spec.trials if t.optimizer == "usam"} == {0.0}
    assert {t.lam for t in spec.trials if t.optimizer == "unified"} == {0.25, 0.5, 0.75}
    assert spec.name == "digits-lam" and spec.max_failures == 2 and spec.max_concurrent is None
    assert spec.resources == {"cpu": 1.0, "gpu": 0.25}
    assert all(t.epochs == 20 and t.dataset == "digits" for t in spec.trials)


def test_grid_order_is_stable_last_axis_fastest():
    spec = parse_spec(EXAMPLE)
    first = [(t.optimizer, t.sampler, t.seed) for t in spec.trials[:6]]
    assert first == [("sgd", s, seed) for s in ("reshuffle", "importance") for seed in (0, 1, 2)]
    assert [(t.optimizer, t.rho, t.seed) for t in spec.trials[6:9]] == [("sam", 0.05, 0), ("sam", 0.05, 1), ("sam", 0.05, 2)]
    assert (spec.trials[-1].optimizer, spec.trials[-1].lam, spec.trials[-1].rho) == ("unified", 0.75, 0.1)


def test_blocks_are_unioned_and_crossed_with_shared_axes():
    spec = parse_spec(BLOCKS)
    assert len(spec.trials) == 3 + 2 * 5 * 3
    assert [(t.optimizer, t.seed) for t in spec.trials[:3]] == [("sgd", 0), ("sgd", 1), ("sgd", 2)]
    unified = [t for t in spec.trials if t.optimizer == "unified"]
    assert Counter(t.lam for t in unified) == {0.0: 6, 0.5: 6, 1.0: 6, "1/t": 6, "1-1/t": 6}
    assert (unified[0].rho, unified[0].lam, unified[0].seed) == (0.1, 0.0, 0)
    assert (unified[1].rho, unified[1].lam, unified[1].seed) == (0.1, 0.0, 1)


def test_grid_list_is_shorthand_for_blocks():
    as_list = parse_spec(_small("  - {optimizer: sgd}\n  - {optimizer: sam, rho: [0.1, 0.2]}"))
    as_map = parse_spec(_small("  blocks: [{optimizer: sgd}, {optimizer: sam, rho: [0.1, 0.2]}]"))
    assert as_list.trials == as_map.trials and len(as_list.trials) == 3
    assert as_list.spec_hash == as_map.spec_hash


def test_block_scalars_apply_to_their_block_only():
    text = _small("  - {optimizer: sgd, lr: 0.5}\n  - {optimizer: sam, rho: 0.05, lr: [0.1, 0.2]}")
    spec = parse_spec(text.replace("lr: 0.1\n", ""))
    assert [(t.optimizer, t.lr, t.rho) for t in spec.trials] == [("sgd", 0.5, 0.0), ("sam", 0.1, 0.05), ("sam", 0.2, 0.05)]


def test_sgd_drops_rho_and_lam_and_duplicates_are_run_once():
    spec = parse_spec(_small("  rho: [0.05, 0.1, 0.2]\n  seed: [0, 1]", optimizer="sgd"))
    assert [(t.optimizer, t.rho, t.seed) for t in spec.trials] == [("sgd", 0.0, 0), ("sgd", 0.0, 1)]
    # overlapping blocks: the second block repeats the first one's configs, kept once, first first
    spec = parse_spec(_small("  - {optimizer: sam, rho: [0.1]}\n  - {optimizer: sam, rho: [0.2, 0.1], lam: 1}"))
    assert [t.rho for t in spec.trials] == [0.1, 0.2]
    # different keys, same config once defaults are filled
    spec = parse_spec(_small("  - {optimizer: sgd}\n  - {optimizer: sgd, sharpness_every: 0, momentum: 0}"))
    assert len(spec.trials) == 1


def test_fixed_lam_is_dropped_for_sam_and_usam_even_at_top_level():
    spec = parse_spec(_small("  optimizer: [sam, usam, unified]", lam=0.5, rho=0.1))
    assert [(t.optimizer, t.lam) for t in spec.trials] == [("sam", 1.0), ("usam", 0.0), ("unified", 0.5)]


def test_no_grid_is_one_trial_and_sharpness_sugar_is_flattened():
    spec = parse_spec(SMALL_SGD + "sharpness: {every: 2, samples: 64}\nweight_decay: 5e-4\n")
    (trial,) = spec.trials
    assert (trial.sharpness_every, trial.sharpness_samples) == (2, 64)
    assert trial.weight_decay == pytest.approx(5e-4, rel=0, abs=1e-15)  # YAML 1.1 would read a string
    assert "sharpness_every: 2" in spec.text and "sharpness:" not in spec.text


# -- overrides -----------------------------------------------------------------------------
def test_override_of_a_grid_key_pins_it():
    spec = parse_spec(EXAMPLE, ["seed=0"])
    assert len(spec.trials) == 22 and {t.seed for t in spec.trials} == {0}
    spec = parse_spec(EXAMPLE, ["optimizer=sgd", "epochs=1"])
    assert len(spec.trials) == 6 and {(t.optimizer, t.epochs) for t in spec.trials} == {("sgd", 1)}


def test_override_grid_axis_and_dotted_keys():
    spec = parse_spec(EXAMPLE, ["grid.seed=[0,1]", "sharpness.every=3", "resources.cpu=2", "lam=1/t"])
    assert len(spec.trials) == 4 + 8 + 8 + 8  # 2 seeds; unified has one lam left
    assert {t.sharpness_every for t in spec.trials} == {3}
    assert {t.lam for t in spec.trials if t.optimizer == "unified"} == {"1/t"}
    assert spec.resources == {"cpu": 2.0, "gpu": 0.25}
    spec = parse_spec(SMALL_SGD + "seed: 4\n", ["grid.seed=[1, 2]"])
    assert [t.seed for t in spec.trials] == [1, 2]


def test_override_removes_the_key_from_blocks():
    spec = parse_spec(BLOCKS, ["optimizer=sgd"])
    assert [(t.optimizer, t.seed) for t in spec.trials] == [("sgd", 0), ("sgd", 1), ("sgd", 2)]
    spec = parse_spec(BLOCKS, ["rho=0.3", "lam=0.5", "seed=7"])
    assert [(t.optimizer, t.rho, t.lam, t.seed) for t in spec.trials] == [("sgd", 0.0, None, 7), ("unified", 0.3, 0.5, 7)]


def test_override_spec_keys_and_whole_grid():
    spec = parse_spec(EXAMPLE, ["name=smoke", "max_failures=0", "max_concurrent=4",
                                "grid={seed: [5], optimizer: [sgd]}"])
    assert (spec.name, spec.max_failures, spec.max_concurrent) == ("smoke", 0, 4)
    assert [(t.optimizer, t.seed) for t in spec.trials] == [("sgd", 5)]


def test_apply_overrides_for_one_trial():
    raw = {"dataset": "digits", "sharpness": {"every": 1}, "lr": 0.1}
    out = apply_overrides(raw, ["sharpness.every=4", "lr=1e-3", "lam=1-1/t", "data_root="])
    assert out == {"dataset": "digits", "lr": 0.001, "sharpness_every": 4, "lam": "1-1/t", "data_root": None}
    assert raw["sharpness"] == {"every": 1}  # input untouched


# -- text and hash -------------------------------------------------------------------------
def test_hash_ignores_layout_and_tracks_overrides():
    spec = parse_spec(EXAMPLE)
    relaid = EXAMPLE.replace("resources: {cpu: 1, gpu: 0.25}", "resources:\n  gpu: 0.25  # a comment\n  cpu: 1.0")
    relaid = relaid.replace("epochs: 20\nlr: 0.1", "lr: 0.1\nepochs: 20")
    assert relaid != EXAMPLE
    assert parse_spec(relaid).spec_hash == spec.spec_hash == parse_spec(EXAMPLE).spec_hash
    assert len(spec.spec_hash) == 40 and int(spec.spec_hash, 16) >= 0
    assert parse_spec(EXAMPLE, ["epochs=1"]).spec_hash != spec.spec_hash
    assert parse_spec(EXAMPLE, ["epochs=2"]).spec_hash != parse_spec(EXAMPLE, ["epochs=1"]).spec_hash
    assert parse_spec(EXAMPLE, ["epochs=20"]).spec_hash == spec.spec_hash


def test_canonical_text_round_trips():
    for text in (EXAMPLE, BLOCKS, SMALL_SGD + "description: '1e-3'\nsharpness: {every: 2}\n"):
        spec = parse_spec(text, ["resources.gpu=2"])
        again = parse_spec(spec.text)
        assert (again.trials, again.text, again.spec_hash) == (spec.trials, spec.text, spec.spec_hash)
        assert again.resources["gpu"] == 2 and again.description == spec.description
    assert parse_spec(SMALL_SGD + "description: '1e-3'\n").description == "1e-3"


def test_load_spec_reads_a_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(EXAMPLE)
    spec = load_spec(path, ["seed=1"])
    assert len(spec.trials) == 22 and spec.spec_hash == parse_spec(EXAMPLE, ["seed=1"]).spec_hash
    with pytest.raises(SpecError, match="spec: .*missing.yaml' is not valid; allowed: a readable YAML file"):
        load_spec(tmp_path / "missing.yaml")


# -- table ---------------------------------------------------------------------------------
def test_table_shows_varying_columns_and_count():
    spec = parse_spec(_small("  - {optimizer: sgd}\n  - {optimizer: unified, rho: 0.05, lam: [0.5, 1/t]}"))
    assert spec.table() == "\n".join([
        "#  dataset  model  optimizer  lam   rho",
        "0  digits   mlp    sgd        -     0.0",
        "1  digits   mlp    unified    0.5  0.05",
        "2  digits   mlp    unified    1/t  0.05",
        "3 trials",
    ])
    lines = parse_spec(EXAMPLE).table().splitlines()
    assert lines[0].split() == ["#", "dataset", "model", "optimizer", "lam", "rho", "sampler", "seed"]
    assert lines[-1] == "66 trials" and len(lines) == 68
    assert parse_spec(SMALL_SGD).table() == "#  dataset  model\n0  digits   mlp\n1 trial"


# -- errors --------------------------------------------------------------------------------
ERRORS = [
    # (spec text, overrides, field, value, allowed fragment)
    (_small("  optimizer: [unified]\n  lam: [0.5, 1, big]", rho=0.1), [], "grid.lam[2]", "big",
     "a number in [0, 1], '1/t' or '1-1/t'"),
    (_small("  - {optimizer: sgd}\n  - {optimizer: sam, rho: [0.1, -1]}"), [], "grid.blocks[1].rho[1]", -1, "a number >= 0"),
    (_small(epoch=3), [], "epoch", 3, "name, grid, resources"),
    (_small(seed="[0, 1, 2]"), [], "seed", [0, 1, 2], "a single value (lists go under grid.seed)"),
    (_small("  optimiser: [sgd]"), [], "grid.optimiser", ["sgd"], "a trial config key: dataset"),
    (_small("  seed: 3"), [], "grid.seed", 3, "a non-empty list"),
    (_small("  seed: []"), [], "grid.seed", [], "a non-empty list"),
    (_small("  seed: [0, 1, 0]"), [], "grid.seed[2]", 0, "distinct values (0 is already at grid.seed[0])"),
    (_small("  seed: [[0, 1]]"), [], "grid.seed[0]", [0, 1], "a single value"),
    (_small("  lr: [0.1]"), [], "grid.lr", [0.1], "a key set in one place only (lr is also set at top level)"),
    (_small("  seed: [0]\n  blocks: [{seed: 1}]"), [], "grid.blocks[0].seed", 1, "also a shared axis grid.seed"),
    (_small("  []"), [], "grid.blocks", [], "a non-empty list of mappings"),
    (_small("  - sgd"), [], "grid.blocks[0]", "sgd", "a mapping of trial keys"),
    (_small("  - {blocks: []}"), [], "grid.blocks[0].blocks", [], "a trial config key"),
    (SMALL + "grid: 3\n", [], "grid", 3, "a mapping of trial keys to lists"),
    (_small(resources="{gpu: 1.5}"), [], "resources.gpu", 1.5, "a fraction in [0, 1] or a whole number of GPUs"),
    (_small(resources="{cpu: -1}"), [], "resources.cpu", -1, "a number >= 0"),
    (_small(resources="{mem: 4}"), [], "resources.mem", 4, "keys cpu, gpu"),
    (_small(resources=3), [], "resources", 3, "a mapping with keys cpu, gpu"),
    (_small(max_failures=-1), [], "max_failures", -1, "an integer >= 0"),
    (_small(max_concurrent=0), [], "max_concurrent", 0, "an integer >= 1 or null"),
    (SMALL.replace("name: small", "name: a/b"), [], "name", "a/b", "letters, digits"),
    (SMALL.replace("name: small", ""), [], "name", None, "letters, digits"),
    (_small(description="[1]"), [], "description", [1], "a string"),
    (_small(sharpness="{often: 2}"), [], "sharpness.often", 2, "keys every, samples, method, trace"),
    (_small(sharpness="{every: 2}", sharpness_every=1), [], "sharpness_every", 1, "sharpness_every is already set"),
    (_small(sharpness_every=1, sharpness="{every: 2}"), [], "sharpness.every", 2, "sharpness_every is already set"),
    (_small(sharpness="{method: exact}"), [], "sharpness_method", "exact", "lanczos, power"),
    (SMALL.replace("dataset: digits", "dataset: digts"), [], "dataset", "digts", "digits"),
    (SMALL_SGD.replace("lr: 0.1", "lr: 0"), [], "lr", 0, "a positive number"),
    (SMALL_SGD.replace("lr: 0.1", "lr: '1e-3'"), [], "lr", "1e-3", "a positive number"),
    ("- a\n- b\n", [], "spec", ["a", "b"], "a YAML mapping"),
    (SMALL + "epochs: 2\n", [], "<spec> line 7", "epochs", "each key once per mapping"),
    (SMALL, ["epochs"], "--set", "epochs", "key=value"),
    (SMALL, ["grid.foo=[1]"], "--set grid.foo", [1], "grid.blocks or grid.KEY with KEY a trial config key: dataset"),
    (SMALL, ["resources.cpu.x=1"], "--set resources.cpu.x", 1, "resources.cpu or resources.gpu"),
    (SMALL, ["resources.mem=1"], "resources.mem", 1, "keys cpu, gpu"),
    (SMALL, ["epoch=1"], "--set epoch", 1, "grid.KEY, grid.blocks, resources.KEY or a key name, grid"),
    (SMALL, ["seed=[0, 1]"], "--set seed", [0, 1], "a single value (use grid.seed=[...] to sweep it)"),
    (SMALL, ["lam=[0.5"], "--set lam", "[0.5", "a YAML value"),
    (SMALL, ["resources.gpu=0.5", "resources.gpu=-1"], "resources.gpu", -1, "a fraction in [0, 1]"),
    (SMALL, ["sharpness.often=1"], "--set sharpness.often", 1, "sharpness.KEY with KEY one of every, samples"),
    (SMALL, ["epochs=0"], "epochs", 0, "an integer >= 1"),
]


@pytest.mark.parametrize("text, overrides, field, value, allowed", ERRORS, ids=[e[2] for e in ERRORS])
def test_every_error_names_field_value_and_allowed(text, overrides, field, value, allowed):
    with pytest.raises(SpecError) as info:
        parse_spec(text, overrides)
    err = info.value
    assert isinstance(err, ConfigError) and isinstance(err, ValueError)
    assert (err.field, err.value) == (field, value)
    message = str(err)
    assert message.startswith(f"{field}: {value!r} is not valid; allowed: ")
    assert allowed in err.allowed and "\n" not in message


def test_bad_lam_message_is_exact():
    text = _small("  optimizer: [sgd, unified]\n  lam: [0.5, 1, big]", rho=0.1)
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert str(info.value) == "grid.lam[2]: 'big' is not valid; allowed: a number in [0, 1], '1/t' or '1-1/t'"


def test_yaml_syntax_error_gives_line_number(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ndataset: digits\ngrid:\n  seed: [0, 1\nlr: 0.1\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(f"{path} line 5: 'lr: 0.1' is not valid; allowed: valid YAML (")
    assert "\n" not in message
    with pytest.raises(SpecError, match=r"^<spec> line 2: 'lr:\\tx' is not valid; allowed: valid YAML"):
        parse_spec("name: x\nlr:\tx\n\tepochs: 1\n")


def test_spec_keys_constant():
    assert SPEC_KEYS == ("name", "grid", "resources", "max_failures", "max_concurrent", "description", "tune",
                         "trackers")
