"""sambench's trial checkpoints: what a trial saves, how the driver finds the latest one
again, and how it is loaded without running code from shared storage. No Ray here.

A checkpoint is a folder of three files: ``state.pt`` (the trial's state: tensors and
plain Python values, loaded with ``torch.load(weights_only=True)``, so a planted pickle is
refused instead of executed), ``records.json`` (every record so far) and ``trial.json``
(status, info, node, done, and how far the trial got). Tune copies these folders to its
storage as ``<storage>/<session>/<trial_id>/checkpoint_NNNNNN/``; one session per driver
run, so a resume never overwrites the checkpoints it resumes from. The driver reads only
the two JSON files; nothing in Tune's own saved state is ever read back (it is pickled).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

STATE, RECORDS, SUMMARY = "state.pt", "records.json", "trial.json"
PREFIX = "checkpoint_"
KEEP_CANDIDATES = 3  # a resumed trial tries its newest checkpoints in turn (an upload may be cut short)


class UnsafeCheckpoint(RuntimeError):
    """A checkpoint holds objects other than tensors and plain data: never load it."""


def save(folder: str | Path, state: dict[str, Any], records: list[dict], summary: dict[str, Any]) -> None:
    """Write one checkpoint into ``folder``; ``summary`` gets the record count and last
    iteration, by which ``find`` ranks checkpoints."""
    import torch

    folder = Path(folder)
    torch.save(state, folder / STATE)
    (folder / RECORDS).write_text(json.dumps(records))
    last = records[-1].get("iteration") if records else None
    (folder / SUMMARY).write_text(json.dumps({**summary, "n_records": len(records), "iteration": last}))


def load(folder: str | Path) -> tuple[dict[str, Any], list[dict]]:
    """(state, records) of a local checkpoint folder. Raises UnsafeCheckpoint for a state
    that a weights-only load refuses, and OSError/ValueError/RuntimeError for a folder that
    is incomplete or corrupt (the caller may try an older checkpoint)."""
    import torch

    folder = Path(folder)
    records = json.loads((folder / RECORDS).read_text())
    try:
        state = torch.load(folder / STATE, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower():
            raise ValueError(f"{folder / STATE}: corrupt ({str(err).splitlines()[0]})") from None
        raise UnsafeCheckpoint(
            f"refusing to load {folder / STATE}: it holds Python objects other than tensors and plain "
            "data (sambench never writes those; someone else wrote this file). Delete the checkpoint "
            "folder to rerun the trial from its start"
        ) from None
    if not isinstance(state, dict) or not isinstance(records, list):
        raise ValueError(f"{folder}: not a sambench checkpoint")
    return state, records


def storage_fs(storage: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and root path of a Tune storage location (a local path or a URI)."""
    if "://" in storage:
        return pafs.FileSystem.from_uri(storage)
    return pafs.LocalFileSystem(), str(Path(storage).resolve())


def read_summary(fs: pafs.FileSystem, folder: str) -> tuple[list[dict], dict[str, Any]] | None:
    """(records, summary) from a checkpoint folder's JSON files; None when either is
    missing or unreadable (an upload cut short). ``state.pt`` is not touched."""
    try:
        with fs.open_input_stream(f"{folder}/{SUMMARY}") as handle:
            summary = json.loads(handle.readall())
        with fs.open_input_stream(f"{folder}/{RECORDS}") as handle:
            records = json.loads(handle.readall())
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or not isinstance(records, list):
        return None
    return records, summary


def find(storage: str, trial_ids: list[str]) -> dict[str, list[str]]:
    """The readable checkpoints of ``trial_ids`` in every session under ``storage``, the
    furthest first (most records; then a finished one; then the newest session). Paths
    are URIs when ``storage`` is one."""
    fs, root = storage_fs(storage)
    scheme = storage.split("://", 1)[0] + "://" if "://" in storage else ""
    wanted = set(trial_ids)
    ranked: dict[str, list[tuple[tuple, str]]] = {}
    for session in _subfolders(fs, root):
        for trial_folder in _subfolders(fs, session):
            tid = trial_folder.rstrip("/").rsplit("/", 1)[-1]
            if tid not in wanted:
                continue
            for folder in _subfolders(fs, trial_folder):
                if not folder.rstrip("/").rsplit("/", 1)[-1].startswith(PREFIX):
                    continue
                loaded = read_summary(fs, folder)
                if loaded is None:
                    continue
                records, summary = loaded
                rank = (len(records), bool(summary.get("done")), folder)
                ranked.setdefault(tid, []).append((rank, scheme + folder))
    return {tid: [path for _, path in sorted(found, reverse=True)] for tid, found in ranked.items()}


def _subfolders(fs: pafs.FileSystem, path: str) -> list[str]:
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except OSError:
        return []
    return sorted(info.path for info in infos if info.type == pafs.FileType.Directory)
