"""The result store: Parquet files under ``results/<sweep>/`` (layout, columns and
guarantees in results/README.md). Written by the sweep driver, read by anyone.

Why files per trial: concurrent writers never touch the same file, a crash loses at most
the trial in flight, and a rerun replaces exactly its own files. Why batches: opening a
small file costs milliseconds, so every COMPACT_AT trials the per-trial files are merged
into one batch file per table, and 10^4 trials read in one scan of a few dozen files. Why
atomic renames: a reader never sees half a file. Why the trials row last: it is the
commit marker; its ``finished_at`` is stamped on the trial's epoch rows too, so a reader
(or plain DuckDB) joins each trial to the epochs of exactly that commit. Readers use one
fixed schema, so empty folders and all-null columns still come back with the right types.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import time
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from harness.files import WriteError, write_atomically
from harness.optim import registry
from harness.provenance import provenance
# The row API (schemas, ids, labels, rows) lives in harness.rows; writers and readers reach
# it through the store, so ``store.trial_row`` and ``store.trial_id`` stay the one entry point.
from harness.rows import (CONFIG_FIELDS, EPOCHS_SCHEMA, PROVENANCE_COLUMNS, STATUSES,  # noqa: F401
                          TRIALS_SCHEMA, config_columns, config_id, epochs_table, json_scalar,
                          lam_text, method_label, trial_id, trial_row)

MANIFEST = "sweep.json"
PARTIAL = ".partial.parquet"   # epochs/<trial_id>.partial.parquet: progress of a running trial
BATCH = "batch-"               # trials/batch-*.parquet, epochs/batch-*.parquet: compacted trials
COMPACT_AT = 256               # per-trial files that trigger a compaction
READ_ATTEMPTS = 5              # a read racing a writer is repeated this often
METADATA_KEY = b"sambench"
SCHEMA_VERSION = 1


# -- writing -------------------------------------------------------------------------------
def write_trial(sweep_dir: str | Path, trial_row: Mapping[str, Any], epoch_rows: list[dict]) -> None:
    """Commit one trial. Order: withdraw an older commit of it, write its epochs, drop its
    progress file, write its trials row (the commit marker). The row's ``finished_at`` is
    set now and stamped on the epoch rows: it names this commit. A crash anywhere leaves
    the trial committed with all its epochs, or not committed at all (its old commit, if
    any, may survive in a batch). Compacts the folder once COMPACT_AT trials files pile up."""
    sweep_dir = Path(sweep_dir)
    unknown = sorted(set(trial_row) - set(TRIALS_SCHEMA.names))
    if unknown:
        raise ValueError(f"trials row has unknown columns: {unknown}")
    row = dict(trial_row) | {"finished_at": dt.datetime.now(dt.timezone.utc)}
    tid, sweep = row["trial_id"], row["sweep"]
    meta = {"sweep": sweep, "spec_hash": row.get("spec_hash"), "trial_id": tid,
            "provenance": {key: row.get(key) for key in PROVENANCE_COLUMNS}}
    epochs = epochs_table(tid, sweep, epoch_rows, row["finished_at"])
    with _lock(sweep_dir, exclusive=False):
        (sweep_dir / "trials" / f"{tid}.parquet").unlink(missing_ok=True)
        _write_atomic(epochs, sweep_dir / "epochs" / f"{tid}.parquet", meta)
        (sweep_dir / "epochs" / f"{tid}{PARTIAL}").unlink(missing_ok=True)
        trials = pa.Table.from_pylist([row], schema=TRIALS_SCHEMA)
        _write_atomic(trials, sweep_dir / "trials" / f"{tid}.parquet", meta)
    if len(_trial_files(sweep_dir)) >= COMPACT_AT:
        compact(sweep_dir, wait=False)


def write_progress(sweep_dir: str | Path, trial_id: str, epoch_rows: list[dict]) -> None:
    """The evaluations so far of a running trial (null ``finished_at``), so a report can
    show progress. Compaction never touches these files."""
    sweep_dir = Path(sweep_dir)
    meta = {"sweep": sweep_dir.name, "spec_hash": None, "trial_id": trial_id, "provenance": provenance()}
    table = epochs_table(trial_id, sweep_dir.name, epoch_rows, None)
    _write_atomic(table, sweep_dir / "epochs" / f"{trial_id}{PARTIAL}", meta)


def compact(sweep_dir: str | Path, wait: bool = True) -> int:
    """Merge the per-trial files into one new batch file per table, then delete them, so a
    reader opens a few large files instead of one pair per trial. Batches are never
    rewritten; a trial committed again later simply has a newer ``finished_at``. Returns
    the number of trials merged (0 if another writer holds the folder and ``wait`` is off)."""
    sweep_dir = Path(sweep_dir)
    with _lock(sweep_dir, exclusive=True, wait=wait) as locked:
        if not locked:
            return 0
        for name in _parquet_names(sweep_dir / "epochs"):  # left by a compaction that crashed
            if name.startswith(BATCH) and not (sweep_dir / "trials" / name).exists():
                (sweep_dir / "epochs" / name).unlink()
        names = _trial_files(sweep_dir)
        if not names:
            return 0
        trials = _read([str(sweep_dir / "trials" / n) for n in names], TRIALS_SCHEMA)
        epochs = _read([str(p) for n in names if (p := sweep_dir / "epochs" / n).exists()], EPOCHS_SCHEMA)
        batch = f"{BATCH}{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:6]}.parquet"
        hashes = sorted(set(trials.column("spec_hash").drop_null().to_pylist()))
        meta = {"sweep": sweep_dir.name, "spec_hash": hashes, "trial_id": None, "batch_trials": len(names),
                "provenance": provenance()}
        _write_atomic(epochs, sweep_dir / "epochs" / batch, meta)
        _write_atomic(trials, sweep_dir / "trials" / batch, meta)
        for sub in ("trials", "epochs"):  # trials first: a crash here never strands a commit
            for name in names:
                (sweep_dir / sub / name).unlink(missing_ok=True)
        return len(names)


def _trial_files(sweep_dir: Path) -> list[str]:
    """Names of the per-trial (not yet compacted) trials files."""
    return [n for n in _parquet_names(sweep_dir / "trials") if not n.startswith(BATCH)]


@contextmanager
def _lock(sweep_dir: Path, exclusive: bool, wait: bool = True) -> Iterator[bool]:
    """Writers share the folder; compaction needs it alone (it deletes files it merged)."""
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        handle = open(sweep_dir / ".store.lock", "a+")
    except OSError as err:
        raise WriteError(f"cannot write into {sweep_dir}: {err.strerror or err}") from err
    with handle:
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB)
        try:
            fcntl.flock(handle, mode)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_atomic(table: pa.Table, path: Path, meta: Mapping[str, Any]) -> None:
    """Write beside the target under a dot-name (readers skip it), fsync, rename over."""
    blob = json.dumps({"schema_version": SCHEMA_VERSION, **meta}, default=str).encode()
    table = table.replace_schema_metadata({METADATA_KEY: blob})
    write_atomically(path, lambda handle: pq.write_table(table, handle), binary=True)


def write_spec(sweep_dir: str | Path, spec_text: str, spec_hash: str, manifest: Mapping[str, Any]) -> None:
    """Keep the exact spec (spec.yaml) and the whole grid (sweep.json), so resume, ls and
    report know which trials are missing. ``manifest["trials"]`` lists the grid as
    ``{"trial_id": ..., "trial": config}``; other keys are kept as given."""
    entries = manifest.get("trials")
    if not isinstance(entries, list) or not all(isinstance(t, Mapping) and "trial_id" in t and "trial" in t
                                                for t in entries):
        raise ValueError("manifest['trials'] must be a list of {'trial_id': ..., 'trial': config}")
    sweep_dir = Path(sweep_dir)
    write_atomically(sweep_dir / "spec.yaml", lambda handle: handle.write(spec_text), binary=False)
    body = {"schema_version": SCHEMA_VERSION, "sweep": sweep_dir.name, "spec_hash": spec_hash,
            "written_at": dt.datetime.now(dt.timezone.utc).isoformat(), "manifest": manifest}
    text = json.dumps(body, indent=1, default=json_scalar)
    write_atomically(sweep_dir / MANIFEST, lambda handle: handle.write(text), binary=False)


def read_manifest(sweep_dir: str | Path) -> dict[str, Any]:
    """The manifest given to write_spec (checked: see open_manifest)."""
    return open_manifest(sweep_dir)


def expected_trials(manifest: Mapping[str, Any]) -> int:
    """How many trials a sweep will record: its grid and final trials, plus each search's
    budget (a search's own trials are suggested while it runs, so the manifest cannot list them)."""
    return (sum(t.get("tags", {}).get("phase") != "tune" for t in manifest["trials"])
            + sum(s["budget"] for s in manifest.get("tune", {}).get("searches", [])))


class SweepFolderError(ValueError):
    """A folder given as a sweep is none, or one this version of sambench cannot read."""


def open_manifest(sweep_dir: str | Path) -> dict[str, Any]:
    """The manifest of a sweep folder, or a one-line SweepFolderError saying why there is
    none: no such folder, a run interrupted before it started, not a sweep, unreadable, or
    written by an incompatible version."""
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / MANIFEST
    if not sweep_dir.is_dir():
        what = "is a file, not a sweep folder" if sweep_dir.exists() else "does not exist"
        raise SweepFolderError(f"{sweep_dir}: {what}")
    if not path.is_file():
        leftovers = {p.name for p in sweep_dir.iterdir()} - {".lock", ".store.lock"}
        if not leftovers:
            raise SweepFolderError(f"{sweep_dir}: its run was interrupted before it started (no {MANIFEST}); "
                                   "start it again with `sambench run SPEC`")
        raise SweepFolderError(f"{sweep_dir} is not a sambench sweep folder (no {MANIFEST})")
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise SweepFolderError(f"{path}: unreadable ({type(err).__name__}); allowed: a {MANIFEST} "
                               "written by sambench") from None
    version = body.get("schema_version") if isinstance(body, dict) else None
    if version != SCHEMA_VERSION:
        raise SweepFolderError(f"{path}: schema_version {version!r} is not valid; allowed: {SCHEMA_VERSION} "
                               "(written by another version of sambench)")
    manifest = body.get("manifest")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("trials"), list):
        raise SweepFolderError(f"{path}: no list of trials; allowed: a {MANIFEST} written by sambench")
    return manifest


def write_error_log(sweep_dir: str | Path, trial_id: str, text: str) -> Path:
    """Keep a failed trial's full traceback as ``errors/<trial_id>.txt`` (the trials row
    holds only its last line)."""
    path = Path(sweep_dir) / "errors" / f"{trial_id}.txt"
    write_atomically(path, lambda handle: handle.write(text + "\n"), binary=False)
    return path


def read_spec(sweep_dir: str | Path) -> tuple[str, str]:
    """(spec text, spec hash) as given to write_spec."""
    sweep_dir = Path(sweep_dir)
    body = json.loads((sweep_dir / MANIFEST).read_text(encoding="utf-8"))
    return (sweep_dir / "spec.yaml").read_text(encoding="utf-8"), body["spec_hash"]


def file_metadata(path: str | Path) -> dict[str, Any]:
    """The sambench key-value metadata of one Parquet file (sweep, spec_hash, trial_id, provenance)."""
    return json.loads(pq.read_schema(path).metadata[METADATA_KEY])


# -- reading -------------------------------------------------------------------------------
def is_sweep_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / MANIFEST).is_file() or (path / "trials").is_dir() or (path / "epochs").is_dir()


def sweep_dirs(results_root: str | Path) -> list[Path]:
    """The sweep folders directly under a results root, by name."""
    root = Path(results_root)
    return sorted(p for p in root.iterdir() if p.is_dir() and is_sweep_dir(p)) if root.is_dir() else []


def _parquet_names(folder: Path) -> list[str]:
    """Finished Parquet files of a folder (dot- and underscore-names are temp files)."""
    if not folder.is_dir():
        return []
    return sorted(e.name for e in os.scandir(folder)
                  if e.name.endswith(".parquet") and not e.name.startswith((".", "_")))


class UnreadableFileWarning(UserWarning):
    """A Parquet file in a results folder is truncated or corrupt and was skipped."""


UNREADABLE = "skipping unreadable Parquet file "  # the start of each UnreadableFileWarning


def _read(files: list[str], schema: pa.Schema) -> pa.Table:
    """All files in one scan under the fixed schema (missing columns read as nulls). A
    truncated or corrupt file is skipped with an UnreadableFileWarning naming it; a file
    that vanished mid-read raises FileNotFoundError (the caller reads again)."""
    try:
        return ds.dataset(files, schema=schema, format="parquet").to_table().replace_schema_metadata(None)
    except FileNotFoundError:
        raise
    except (pa.ArrowInvalid, OSError):
        pass  # find the bad file(s): one at a time
    tables = []
    for name in files:
        try:
            tables.append(ds.dataset([name], schema=schema, format="parquet").to_table())
        except FileNotFoundError:
            raise
        except (pa.ArrowInvalid, OSError) as err:
            warnings.warn(f"{UNREADABLE}{name}: {' '.join(str(err).split())}",
                          UnreadableFileWarning, stacklevel=2)
    return (pa.concat_tables(tables) if tables else schema.empty_table()).replace_schema_metadata(None)


def _first_per_key(table: pa.Table, keys: list[str]) -> pa.Table:
    """Keep the first row of each run of equal ``keys`` (the table is sorted on them)."""
    n = table.num_rows
    if n < 2:
        return table
    changed = None
    for key in keys:
        col = table.column(key).combine_chunks()
        a, b = col.slice(1), col.slice(0, n - 1)
        diff = pc.fill_null(pc.not_equal(a, b), pc.not_equal(pc.is_null(a), pc.is_null(b)))
        changed = diff if changed is None else pc.or_(changed, diff)
    return table.filter(pa.concat_arrays([pa.array([True]), changed]))


def _files(dirs: Iterable[Path], sub: str, partial: bool) -> list[str]:
    return [str(d / sub / n) for d in dirs for n in _parquet_names(d / sub)
            if n.endswith(PARTIAL) == partial]


def _trials(dirs: list[Path]) -> pa.Table:
    """One row per trial id: its latest commit (largest ``finished_at``)."""
    table = _read(_files(dirs, "trials", partial=False), TRIALS_SCHEMA)
    table = table.sort_by([("trial_id", "ascending"), ("finished_at", "descending")])
    return _first_per_key(table, ["trial_id"]).sort_by([("sweep", "ascending"), ("trial_id", "ascending")])


def _epochs(dirs: list[Path], trials: pa.Table, include_partial: bool) -> tuple[pa.Table, set[str]]:
    """Epoch rows matching each trial's commit (trial_id and finished_at); with
    ``include_partial`` also those of trials without a commit (a final file that was never
    committed, else the progress file). Also the committed trials with records whose rows
    were not found (a writer moved files during the read)."""
    ids = trials.column("trial_id").combine_chunks()
    final = _read(_files(dirs, "epochs", partial=False), EPOCHS_SCHEMA)
    position = pc.index_in(final.column("trial_id"), value_set=ids)
    committed = pc.fill_null(pc.equal(final.column("finished_at"),
                                      trials.column("finished_at").take(position)), False)
    parts = [final.filter(committed)]
    found = pc.is_in(trials.column("trial_id"), value_set=parts[0].column("trial_id").unique())
    lost = trials.filter(pc.and_(pc.invert(found), pc.is_valid(trials.column("iterations_done"))))
    missing = set(lost.column("trial_id").to_pylist())
    if include_partial:
        orphans = final.filter(pc.is_null(position))
        progress = _read(_files(dirs, "epochs", partial=True), EPOCHS_SCHEMA)
        taken = pa.concat_arrays([ids, orphans.column("trial_id").unique()])
        parts += [orphans, progress.filter(pc.invert(pc.is_in(progress.column("trial_id"), value_set=taken)))]
    table = pa.concat_tables(parts).sort_by([("sweep", "ascending"), ("trial_id", "ascending"),
                                             ("iteration", "ascending")])
    return _first_per_key(table, ["trial_id", "iteration"]), missing


def scan(dirs: Iterable[str | Path], include_partial: bool = True) -> tuple[pa.Table, pa.Table]:
    """(trials, epochs) of the given sweep folders as Arrow tables, deduplicated: one row
    per trial id (its latest commit) and per (trial_id, iteration) of that commit. A read
    that raced a writer (a file gone, or epochs of another commit) is repeated; the same
    trials missing their epochs twice in a row are taken as they are."""
    dirs = [Path(d) for d in dirs]
    previous: set[str] | None = None
    for attempt in range(READ_ATTEMPTS):
        try:
            trials = _trials(dirs)
            epochs, missing = _epochs(dirs, trials, include_partial)
        except FileNotFoundError:
            if attempt == READ_ATTEMPTS - 1:
                raise
            continue
        if not missing or missing == previous:
            break
        previous = missing
    return trials, epochs


def trials_table(dirs: Iterable[str | Path]) -> pa.Table:
    """The trials of the given sweep folders (the latest commit of each trial id)."""
    dirs = [Path(d) for d in dirs]
    for attempt in range(READ_ATTEMPTS):
        try:
            return _trials(dirs)
        except FileNotFoundError:
            if attempt == READ_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def completed_trial_ids(sweep_dir: str | Path, include_errors: bool = True) -> set[str]:
    """Ids of the trials with a trials row; without ``include_errors`` the errored ones are
    left out (a resume that reruns them)."""
    table = trials_table([sweep_dir])
    if not include_errors:
        table = table.filter(pc.not_equal(table.column("status"), "error"))
    return set(table.column("trial_id").to_pylist())


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """Arrow -> pandas with honest dtypes: text as ``category`` (sorted categories, method in
    legend order), int64 as nullable ``Int64``, bool as ``boolean``, float64 with NaN."""
    columns = [col.dictionary_encode() if pa.types.is_string(col.type) else col for col in table.columns]
    frame = pa.Table.from_arrays(columns, names=table.column_names).to_pandas(
        types_mapper={pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}.get)
    for name, col in zip(table.column_names, columns):
        if pa.types.is_dictionary(col.type):
            key = registry.label_order if name == "method" else str
            frame[name] = frame[name].cat.set_categories(sorted(frame[name].cat.categories, key=key))
    return frame


def read_trials(sweep_dir: str | Path) -> pd.DataFrame:
    """The trials of one sweep folder as a DataFrame (dtypes: see to_pandas)."""
    return to_pandas(trials_table([sweep_dir]))


def read_epochs(sweep_dir: str | Path, include_partial: bool = True) -> pd.DataFrame:
    """The epoch rows of one sweep folder (see scan); ``include_partial`` adds the rows of
    trials that have no trials row yet."""
    return to_pandas(scan([sweep_dir], include_partial)[1])
