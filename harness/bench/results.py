"""The suite's output: Parquet tables, figures and a Markdown summary in one folder.

- ``timings.parquet``: every raw value (one row per measurement, side and repeat);
- ``sides.parquet``: per side, the median, quartiles, min and max, with warm-up and repeat
  counts and the measurement's extra facts (JSON);
- ``ratios.parquet``: the headlines, each a ratio formed per repeat then summarised, its
  goal and whether it was met;
- ``machine.parquet``: one row of machine facts (results/README.md lists the columns);
- ``figures/ratios.png``, ``figures/timings.png``, and ``summary.md`` (the headline table).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.bench.common import Measurement

TABLES = ("timings", "sides", "ratios", "machine")


def tables(measurements: list[Measurement], facts: dict[str, Any],
           seconds: dict[str, float]) -> dict[str, pd.DataFrame]:
    timings, sides, ratios = [], [], []
    for m in measurements:
        key = dict(item=m.item, bench=m.bench, case=m.case)
        repeats = max(len(v) for v in m.values.values())
        for side, values in m.values.items():
            timings += [dict(key, side=side, repeat=i, value=v, unit=m.unit) for i, v in enumerate(values)]
            q = np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])
            sides.append(dict(key, side=side, unit=m.unit, warmup=m.warmup, repeats=len(values),
                              median=q[2], q25=q[1], q75=q[3], min=q[0], max=q[4],
                              note=m.note, facts=json.dumps(m.extra, sort_keys=True)))
        for h in m.headlines:
            a, b = np.asarray(m.values[h.side]), np.asarray(m.values[h.reference])
            per_repeat = b / a if h.speedup else a / b
            q = np.quantile(per_repeat, [0.0, 0.25, 0.5, 0.75, 1.0])
            met = None if h.goal is None else bool(q[2] >= h.goal if h.speedup else q[2] <= h.goal)
            ratios.append(dict(key, side=h.side, reference=h.reference,
                               ratio_of="reference / side" if h.speedup else "side / reference",
                               ratio_median=q[2], ratio_q25=q[1], ratio_q75=q[3], ratio_min=q[0],
                               ratio_max=q[4], side_median=float(np.median(a)),
                               reference_median=float(np.median(b)), unit=m.unit, repeats=repeats,
                               warmup=m.warmup, goal=h.goal,
                               goal_kind=None if h.goal is None else ">=" if h.speedup else "<=",
                               goal_met=met, note=m.note))
    machine = pd.DataFrame([facts | {f"seconds_{name}": s for name, s in seconds.items()}])
    return {"timings": pd.DataFrame(timings), "sides": pd.DataFrame(sides),
            "ratios": pd.DataFrame(ratios), "machine": machine}


def write_results(folder: Path, measurements: list[Measurement], facts: dict[str, Any],
                  seconds: dict[str, float]) -> None:
    """Every table as Parquet, the figures and summary.md; files appear whole (renamed)."""
    from harness.bench.figures import draw_ratios, draw_timings

    frames = tables(measurements, facts, seconds)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        _atomic(folder / f"{name}.parquet", lambda path, frame=frame: frame.to_parquet(path, index=False))
    (folder / "figures").mkdir(exist_ok=True)
    draw_ratios(frames["ratios"], frames["machine"].iloc[0], folder / "figures" / "ratios.png")
    draw_timings(frames["timings"], folder / "figures" / "timings.png")
    _atomic(folder / "summary.md", lambda path: Path(path).write_text(summary(frames)))


def summary(frames: dict[str, pd.DataFrame]) -> str:
    """The headline table in Markdown, with the machine it came from."""
    m = frames["machine"].iloc[0]
    lines = [f"Machine: {m['cpu_model']}, {m['cores']} cores ({m['torch_threads']} torch threads)"
             + (f", {m['gpu_name']} (driver {m['gpu_driver']})" if m.get("gpu_name") else ", no GPU")
             + f"; torch {m['torch_version']}; suite size {m['size']}, {m['suite_seconds']:.0f} s;"
             f" commit {str(m['git_commit'])[:10]}{' (uncommitted changes)' if m['git_dirty'] else ''},"
             f" {m['measured_at']}.", ""]
    if m.get("failed"):
        lines[-1:] = [f"Failed: {m['failed']}.", ""]
    lines += ["| # | case | ratio | median [IQR] | goal | met |", "|---|---|---|---|---|---|"]
    for r in frames["ratios"].itertuples():
        ratio = f"{r.side} / {r.reference}" if r.ratio_of == "side / reference" else f"{r.reference} / {r.side}"
        goal = "" if pd.isna(r.goal) else f"{r.goal_kind} {r.goal:g}"
        met = "" if r.goal_met is None or pd.isna(r.goal_met) else "yes" if r.goal_met else "no"
        lines.append(f"| {r.item} | {r.case} | {ratio} | {r.ratio_median:.3g} [{r.ratio_q25:.3g}, "
                     f"{r.ratio_q75:.3g}] | {goal} | {met} |")
    return "\n".join(lines) + "\n"


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)
