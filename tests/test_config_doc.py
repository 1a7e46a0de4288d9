"""First contact: `sambench train --help` lists every trial key with its default and
allowed values, docs/configuration.md is the same table, and bare `train` runs."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from harness.cli import main
from harness.config import TrialConfig
from harness.config_doc import key_table, markdown

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_every_key_with_default_and_allowed_values(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for f in fields(TrialConfig):
        line = next((row for row in text.splitlines() if row.startswith(f"  {f.name} ")), None)
        assert line is not None and "default " in line and "allowed: " in line, f.name
    assert "allowed: digits, " in text and "sgd, sam, usam, unified" in text


def test_every_key_has_a_meaning_and_registry_names_are_listed():
    from harness.models import MODELS
    from harness.samplers import SAMPLERS

    rows = {key: (default, allowed, meaning) for key, default, allowed, meaning in key_table()}
    assert all(meaning for _, _, meaning in rows.values()), [k for k, v in rows.items() if not v[2]]
    assert all(name in rows["model"][1] for name in MODELS)
    assert all(name in rows["sampler"][1] for name in SAMPLERS)


def test_docs_configuration_is_generated_from_the_same_source():
    assert (ROOT / "docs" / "configuration.md").read_text() == markdown(), (
        "docs/configuration.md is stale: run `python -m harness.config_doc > docs/configuration.md`")


def test_bare_train_runs_the_default_sam_trial(capsys):
    assert main(["train"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("trial: digits/mlp sam") and lines[-1] == "status: ok"
    assert len(lines) == 2 + 5  # one line per epoch
