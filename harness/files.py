"""Writing result and report files so that a failed write leaves nothing behind.

Every file sambench keeps (Parquet, the manifest, error logs, report pages, tables and
figures) is written beside its final name under a dot-name, flushed to disk, then renamed
over it: a reader, or a crash, sees the old file or the new one, never half of one. A
write that fails (a read-only folder, a full disk) removes its temp file and raises
WriteError naming the folder, which the CLI prints as one line.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable


class WriteError(OSError):
    """A file could not be written into a folder; the message names the folder and why."""


def _reason(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


def write_atomically(path: Path, write: Callable[[Any], None], binary: bool) -> None:
    """Call ``write(handle)`` on a temp file beside ``path``, fsync, rename it over ``path``.
    Raises WriteError (the temp file removed, ``path`` untouched) when any step fails."""
    folder = path.parent
    tmp = folder / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise WriteError(f"cannot write {path.name} into {folder}: {_reason(err)}") from err
    finally:
        tmp.unlink(missing_ok=True)
    try:  # make the rename itself durable; some file systems cannot, which is fine
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def check_writable(folder: Path) -> None:
    """Raise WriteError unless files can be created in ``folder`` (or, if it does not exist
    yet, in its nearest existing parent, where it would be made). It tries for real, with a
    temp folder it removes at once: permission bits say nothing for root, a read-only mount
    or a full quota. Lets a command refuse before it starts work it could not record."""
    folder = Path(folder).absolute()
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
    if not existing.is_dir():
        raise WriteError(f"cannot write into {folder}: {existing} is a file, not a folder")
    try:
        tempfile.TemporaryDirectory(dir=existing, prefix=".sambench-probe-").cleanup()
    except OSError as err:
        raise WriteError(f"cannot write into {folder}: {_reason(err)} ({existing})") from err
