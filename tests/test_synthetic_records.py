"""Records say exactly what ran on a synthetic problem: the paper-compat samplers' (A, B)
are stored as not guaranteed, the trials table keeps that and the counters, and the report
says so."""

from __future__ import annotations

import pandas as pd

from analysis.document import Document
from analysis.report import _sampler_constants_note
from harness import store
from harness.config import TrialConfig
from harness.synthetic import SyntheticTrial

BASE = dict(dataset="ridge", model="linear", n_samples=30, dim=10, reg=0.03, optimizer="unified", lam=0.5,
            step_rule="v1", batch_size=1, iterations=60, eval_every=30)


def _row(**changes) -> dict:
    cfg = TrialConfig.from_dict({**BASE, **changes})
    trial = SyntheticTrial(cfg)
    records = list(trial.records())
    return store.trial_row(sweep="s", spec_hash="h", trial_id=store.trial_id("s", cfg.to_dict()),
                           config=cfg.to_dict(), records=records, status="ok", error=None, attempts=1,
                           info=trial.info(), node="n", provenance={})


def test_trials_rows_say_what_ran_and_the_report_flags_unguaranteed_constants():
    exact = _row(sampler="importance")
    compat = _row(sampler="importance", paper_compat=True)
    assert exact["sampler_AB_guaranteed"] is True and exact["sampler_AB_caveat"] is None
    assert compat["sampler_AB_guaranteed"] is False and "biased" in compat["sampler_AB_caveat"]
    # the constants the step rule used are still stored beside the flag (paper-compat: (Lbar, 0))
    assert compat["sampler_A"] == compat["problem_L_bar"] and compat["sampler_B"] == 0.0
    for row in (exact, compat):  # what ran: p_i ~ L_i, no proxy, no mix, no refresh
        assert row["importance_mix"] is None and row["importance_proxy"] is None
        assert row["importance_refresh"] is None
        assert (row["grad_samples"], row["refresh_samples"], row["epochs_done"]) == (2 * 60, 0, 2.0)
    doc = Document("t")
    _sampler_constants_note(doc, pd.DataFrame([exact, compat]))
    text = doc.markdown()
    assert "not guaranteed" in text and ", 1 trial(s): not guaranteed" in text and compat["sampler_desc"] in text
    quiet = Document("t")
    _sampler_constants_note(quiet, pd.DataFrame([exact]))
    assert "not guaranteed" not in quiet.markdown()
