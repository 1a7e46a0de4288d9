"""What a trials row and an epochs row hold: the two Parquet schemas, trial ids, method
labels and the building of one trial's rows from its records. harness.store writes and
reads them; every column is documented in results/README.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import MISSING, fields
from typing import Any, Iterable, Mapping, get_args, get_type_hints

import pyarrow as pa

from harness.config import TrialConfig
from harness.optim import registry
from harness.optim.registry import lam_text
from harness.records import RECORD_FIELDS

STATUSES = ("ok", "diverged", "error")
PHASES = ("grid", "tune", "final")  # a grid trial; a tuning trial of a search; a winner's rerun
TAG_COLUMNS = ("phase", "search_id", "search_index")

_PY_TO_ARROW = {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}


def _config_schema() -> list[pa.Field]:
    """One column per TrialConfig field, typed from its annotation; ``lam`` is text because
    it holds numbers and schedule names alike."""
    hints = get_type_hints(TrialConfig)
    columns = []
    for f in fields(TrialConfig):
        if f.name == "lam":
            columns.append(pa.field("lam", pa.string()))
            continue
        types = [t for t in (get_args(hints[f.name]) or (hints[f.name],)) if t is not type(None)]
        if len(types) != 1 or types[0] not in _PY_TO_ARROW:
            raise TypeError(f"TrialConfig.{f.name}: no Parquet type for {hints[f.name]}")
        columns.append(pa.field(f.name, _PY_TO_ARROW[types[0]]))
    return columns


_F64, _I64, _STR = pa.float64(), pa.int64(), pa.string()
CONFIG_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(TrialConfig))
CONFIG_DEFAULTS = {f.name: f.default for f in fields(TrialConfig) if f.default is not MISSING}
# info key from the trial runner -> column; "device" becomes "device_used" because the
# config already has a "device" column (the requested one: auto/cpu/cuda).
INFO_COLUMNS = {"sampler_desc": "sampler_desc", "device": "device_used", "tf32": "tf32_used"} | {
    k: k for k in ("problem_L", "problem_mu", "problem_L_max", "problem_L_bar", "problem_f_star",
                   "sampler_A", "sampler_B", "sampler_AB_guaranteed", "sampler_AB_caveat",
                   "theory_rho", "theory_lr")}
_INFO_TYPES = {"sampler_desc": _STR, "device_used": _STR, "sampler_AB_guaranteed": pa.bool_(),
               "sampler_AB_caveat": _STR, "tf32_used": pa.bool_()}  # every other info column is float64
SUMMARY_COLUMNS = ("epochs_done", "iterations_done", "grad_evals", "grad_samples", "refresh_samples",
                   "final_train_loss", "final_test_loss", "final_test_acc", "final_val_loss", "final_val_acc",
                   "best_test_acc", "best_epoch", "final_rel_subopt", "final_lam_max", "final_trace",
                   "final_weight_norm", "time_train", "time_eval", "time_sharpness", "time_total")
PROVENANCE_COLUMNS = ("git_commit", "git_dirty", "python_version", "torch_version", "ray_version",
                      "sambench_version", "hostname", "cpu_model", "gpu_model")

TRIALS_SCHEMA = pa.schema(
    [pa.field("trial_id", _STR), pa.field("sweep", _STR), pa.field("spec_hash", _STR)]
    + _config_schema()
    + [pa.field("method", _STR), pa.field("status", _STR), pa.field("error", _STR),
       pa.field("attempts", _I64)]
    + [pa.field("phase", _STR), pa.field("search_id", _STR), pa.field("search_index", _I64)]
    + [pa.field(c, _INFO_TYPES.get(c, _F64)) for c in INFO_COLUMNS.values()]
    + [pa.field(c, _I64 if c in ("iterations_done", "grad_evals", "grad_samples", "refresh_samples") else _F64)
       for c in SUMMARY_COLUMNS]
    + [pa.field("node", _STR), pa.field("concurrency", _F64)]
    + [pa.field(c, pa.bool_() if c == "git_dirty" else _STR) for c in PROVENANCE_COLUMNS]
    + [pa.field("finished_at", pa.timestamp("us", tz="UTC"))]
)
EPOCHS_SCHEMA = pa.schema(
    [pa.field("trial_id", _STR), pa.field("sweep", _STR)]
    + [pa.field(name, pa.type_for_alias(spec[0])) for name, spec in RECORD_FIELDS.items()]
    + [pa.field("finished_at", pa.timestamp("us", tz="UTC"))]  # the commit; null in progress files
)


# -- identity and labels -------------------------------------------------------------------
def trial_id(sweep: str, config: Mapping[str, Any]) -> str:
    """12 hex digits of sha1 over canonical JSON of (sweep, config): a resume or a rerun of
    the same trial maps to the same id; the same config in another sweep does not."""
    text = json.dumps({"config": config, "sweep": sweep}, sort_keys=True, separators=(",", ":"),
                      default=json_scalar)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def config_id(sweep: str, cfg: TrialConfig) -> str:
    """The id of a validated trial config: ``trial_id`` of its identity (see TrialConfig.identity)."""
    return trial_id(sweep, cfg.identity())


def json_scalar(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"config value {value!r} is not JSON-serialisable")


def method_label(config: Mapping[str, Any]) -> str:
    """The legend label (SGD, SAM, USAM, Unified (lam=...), VaSSO, Unified VaSSO (lam=...),
    ...), as the optimizer registry makes it."""
    return registry.method_label(str(config["optimizer"]), config.get("lam"))


def config_columns(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as trials columns: nested mappings flattened (``sharpness: {every: 2}`` ->
    ``sharpness_every``), missing keys at their TrialConfig defaults, lam as text."""
    flat = _flatten(config)
    unknown = sorted(set(flat) - set(CONFIG_FIELDS))
    if unknown:
        raise ValueError(f"config keys that are not TrialConfig fields: {unknown}")
    columns = {name: flat.get(name, CONFIG_DEFAULTS[name]) for name in CONFIG_FIELDS}
    columns["lam"] = lam_text(columns["lam"])
    return columns


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}_"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# -- rows ----------------------------------------------------------------------------------
def trial_row(*, sweep: str, spec_hash: str, trial_id: str, config: Mapping[str, Any],
              records: list[dict], status: str, error: str | None, attempts: int,
              info: Mapping[str, Any], node: str, provenance: Mapping[str, Any],
              tags: Mapping[str, Any] | None = None, concurrency: float | None = None) -> dict[str, Any]:
    """The trials row of one finished trial (see results/README.md for every column).
    ``concurrency``: the median number of trials running on its node while it reported.
    ``tags``: ``phase`` (grid, tune or final; grid when absent), ``search_id`` and
    ``search_index`` of an equal-budget tuning search (harness/tuning.py)."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {STATUSES}")
    tags = dict(tags or {})
    if set(tags) - set(TAG_COLUMNS) or tags.get("phase", "grid") not in PHASES:
        raise ValueError(f"trial tags {tags} are not {TAG_COLUMNS} with a phase in {PHASES}")
    unknown = sorted(set(info) - set(INFO_COLUMNS)) + sorted(set(provenance) - set(PROVENANCE_COLUMNS))
    if unknown:
        raise ValueError(f"unknown trial info or provenance keys: {unknown}")
    row: dict[str, Any] = {"trial_id": trial_id, "sweep": sweep, "spec_hash": spec_hash}
    row |= config_columns(config)
    row |= {"method": method_label(config), "status": status,
            "error": " ".join(error.split()) if error is not None else None, "attempts": attempts}
    row |= {"phase": tags.get("phase", "grid"), "search_id": tags.get("search_id"),
            "search_index": tags.get("search_index")}
    row |= {column: info.get(key) for key, column in INFO_COLUMNS.items()}
    row |= _summaries(_dedupe_records(records))
    row["node"], row["concurrency"] = node, concurrency
    row |= {key: provenance.get(key) for key in PROVENANCE_COLUMNS}
    row["finished_at"] = dt.datetime.now(dt.timezone.utc)
    return row


def _summaries(records: list[dict]) -> dict[str, Any]:
    last = records[-1] if records else {}

    def last_measured(name: str) -> Any:
        return next((r[name] for r in reversed(records) if r.get(name) is not None), None)

    scored = [r for r in records if r.get("test_acc") is not None and r["test_acc"] == r["test_acc"]]
    best = max(scored, key=lambda r: r["test_acc"]) if scored else {}  # first of equal maxima
    return {
        "epochs_done": last.get("epoch"), "iterations_done": last.get("iteration"),
        "grad_evals": last.get("grad_evals"), "grad_samples": last.get("grad_samples"),
        "refresh_samples": last.get("refresh_samples"), "final_train_loss": last.get("train_loss"),
        "final_test_loss": last.get("test_loss"), "final_test_acc": last.get("test_acc"),
        "final_val_loss": last.get("val_loss"), "final_val_acc": last.get("val_acc"),
        "best_test_acc": best.get("test_acc"), "best_epoch": best.get("epoch"),
        "final_rel_subopt": last.get("rel_subopt"), "final_lam_max": last_measured("lam_max"),
        "final_trace": last_measured("trace"), "final_weight_norm": last.get("weight_norm"),
        **{name: last.get(name) for name in ("time_train", "time_eval", "time_sharpness", "time_total")},
    }


def _dedupe_records(records: Iterable[Mapping[str, Any]]) -> list[dict]:
    """One record per iteration, the last one reported (a trial restored from a checkpoint
    reports some iterations again), in iteration order."""
    by_iteration: dict[int, dict] = {}
    for record in records:
        if record.get("iteration") is None:
            raise ValueError(f"record without an iteration: {dict(record)}")
        by_iteration[record["iteration"]] = dict(record)
    return [by_iteration[i] for i in sorted(by_iteration)]


def epochs_table(trial_id: str, sweep: str, records: Iterable[Mapping[str, Any]],
                  finished_at: dt.datetime | None) -> pa.Table:
    rows = []
    for record in _dedupe_records(records):
        unknown = sorted(set(record) - set(EPOCHS_SCHEMA.names))
        if unknown or record.setdefault("trial_id", trial_id) != trial_id:
            raise ValueError(f"epoch row of trial {trial_id} has unknown keys {unknown} or another trial_id")
        rows.append(record | {"sweep": record.get("sweep", sweep), "finished_at": finished_at})
    return pa.Table.from_pylist(rows, schema=EPOCHS_SCHEMA)
