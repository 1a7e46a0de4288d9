"""Wall-clock per epoch, measured so that machine load does not pass for a method's cost.

A trial's time per epoch is the median of its per-epoch training-only times, leaving out
its first epoch (warm-up: allocations, caches, thread pools), so that a few slow epochs
after a restart or under a burst of concurrent load do not move it. A method's cost is the
ratio of its mean time per epoch to the baseline's on the same workload and device, with
Fieller's interval, which carries the uncertainty of both means. Trials restarted from a
checkpoint, comparisons whose trials ran in several Ray sessions, and comparisons whose
trials ran beside different numbers of other trials (the trials table's ``concurrency``)
are flagged: their timings may come from different machine load.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.aggregate import BASELINE, WORKLOAD, baseline_mask, config_columns, grouped
from analysis.stats import ci_name, fieller

DEVICE = "device_used"


def epoch_times(trials: pd.DataFrame, epochs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per finished trial, beside its configuration: ``time_per_epoch`` (s, the median steady-state epoch; the mean
    over the run when the epochs table is not given or a trial has a single evaluation),
    ``epochs_timed``, ``restarted`` (started more than once), ``host`` and ``session`` (the
    Ray node it ran on) and ``concurrency`` (trials running beside it, itself included)."""
    done = trials[trials["status"].astype(str) == "ok"] if "status" in trials else trials
    keys = [c for c in (*WORKLOAD, DEVICE) if c in done]
    columns = ["method", *keys, *config_columns(trials), *(c for c in ("optimizer",) if c in done)]
    out = done[["trial_id", *dict.fromkeys(columns)]].copy()  # configs too, for baseline filters
    out["trial_id"] = out["trial_id"].astype(str)
    out["time_per_epoch"] = (done["time_train"] / done["epochs_done"]).to_numpy(dtype=float)
    out["epochs_timed"] = 0
    if epochs is not None and len(epochs):
        rows = epochs[["trial_id", "iteration", "epoch", "time_train"]].dropna().copy()
        rows["trial_id"] = rows["trial_id"].astype(str)
        rows = rows.sort_values(["trial_id", "iteration"], kind="stable")
        step = rows.groupby("trial_id", sort=False)[["epoch", "time_train"]].diff()
        rows["per_epoch"] = step["time_train"] / step["epoch"]
        first = rows[rows["epoch"] > 0].groupby("trial_id")["epoch"].min()
        # the first trained epoch is warm-up, and its interval is also the only one with no start record
        steady = rows[(rows["epoch"] > rows["trial_id"].map(first)) & (step["epoch"] > 0)]
        median = steady.groupby("trial_id")["per_epoch"].median()
        out["epochs_timed"] = out["trial_id"].map(steady.groupby("trial_id").size()).fillna(0).astype(int)
        out["time_per_epoch"] = out["trial_id"].map(median).fillna(out["time_per_epoch"]).to_numpy(dtype=float)
    out["restarted"] = (done["attempts"].fillna(1) > 1).to_numpy() if "attempts" in done else False
    node = done["node"].astype(object) if "node" in done else pd.Series(None, index=done.index, dtype=object)
    out["session"] = node.to_numpy()
    out["host"] = [hosts_of(v) for v in node]
    out["concurrency"] = done["concurrency"].to_numpy(dtype=float) if "concurrency" in done else np.nan
    return out.sort_values("trial_id").reset_index(drop=True)


def hosts_of(node: object) -> str | None:
    """The host of a Ray node name 'hostname/node-id' (one host may run several sessions)."""
    return None if node is None or (isinstance(node, float) and np.isnan(node)) else str(node).split("/")[0]


def wallclock_table(trials: pd.DataFrame, epochs: pd.DataFrame | None = None,
                    baseline: str | Mapping[str, str] = BASELINE, by: Sequence[str] = WORKLOAD,
                    level: float = 0.95) -> pd.DataFrame:
    """Per workload, device and method: mean time per epoch (s), its ratio to the baseline's
    with Fieller's interval (none on the baseline's own row, ``is_baseline``), n, how many of
    the trials were restarted, in how many Ray sessions the compared trials ran (>1:
    timings may reflect different machine load) and the least and most trials that ran at
    once beside them (``concurrency_min``/``_max``, over the row's and the baseline's trials;
    they differ: so may the machine load)."""
    times = epoch_times(trials, epochs)
    times["_base"] = baseline_mask(times, baseline).to_numpy()
    keys = [c for c in (*by, DEVICE) if c in times]
    g = grouped(times, [*keys, "method", "_base"])
    table = pd.DataFrame({"time_per_epoch_mean": g["time_per_epoch"].mean(),
                          "time_per_epoch_std": g["time_per_epoch"].std(ddof=1),
                          "n": g["time_per_epoch"].count(), "restarted": g["restarted"].sum().astype(int),
                          "_sessions": g["session"].agg(lambda s: frozenset(s.dropna())),
                          "_cmin": g["concurrency"].min(), "_cmax": g["concurrency"].max()}).reset_index()
    base = table[table["_base"]]
    base = grouped(base.sort_values("n", ascending=False, kind="stable"), keys).head(1) if keys else base.head(1)
    base = base[[*keys, "time_per_epoch_mean", "time_per_epoch_std", "n", "_sessions", "_cmin", "_cmax"]].rename(
        columns={"time_per_epoch_mean": "_b_mean", "time_per_epoch_std": "_b_std", "n": "_b_n",
                 "_sessions": "_b_sessions", "_cmin": "_b_cmin", "_cmax": "_b_cmax"})
    out = table.merge(base, on=keys, how="inner") if keys else table.merge(base, how="cross")
    ratio = fieller(out["time_per_epoch_mean"], out["time_per_epoch_std"], out["n"],
                    out["_b_mean"], out["_b_std"], out["_b_n"], level)
    name = ci_name(level)
    out["ratio_to_baseline"] = ratio["ratio"].to_numpy()
    # Times are positive: a Fieller bound below 0 (a noisy baseline) says only "near 0".
    out[f"ratio_{name}_low"] = np.clip(ratio["low"].to_numpy(), 0.0, None)
    out[f"ratio_{name}_high"] = ratio["high"].to_numpy()
    out["is_baseline"] = out["_base"] & (out["n"] == out["_b_n"]) & (out["time_per_epoch_mean"] == out["_b_mean"])
    out.loc[out["is_baseline"], [f"ratio_{name}_low", f"ratio_{name}_high"]] = np.nan  # not against itself
    out["sessions"] = [len(a | b) for a, b in zip(out["_sessions"], out["_b_sessions"])]
    out["concurrency_min"] = out[["_cmin", "_b_cmin"]].min(axis=1)  # NaN only when never observed
    out["concurrency_max"] = out[["_cmax", "_b_cmax"]].max(axis=1)
    out = out.drop(columns=["_base", "_sessions", "_b_sessions", "_b_mean", "_b_std", "_b_n",
                            "_cmin", "_cmax", "_b_cmin", "_b_cmax"])
    return out.sort_values([*keys, "method"], kind="stable").reset_index(drop=True)
