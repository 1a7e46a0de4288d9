"""Provenance: which code, on which machine, with which versions produced a result.

Cheap and side-effect free: git runs once per process, versions come from installed
metadata, and the GPU model is read without importing torch or creating a CUDA context.
"""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
from collections import Counter
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any


def provenance() -> dict[str, Any]:
    """Where and with what this process runs. Cached: git runs once per process."""
    return dict(_provenance())


@lru_cache(maxsize=1)
def _provenance() -> dict[str, Any]:
    import harness

    commit, dirty = _git_state(Path(harness.__file__).resolve().parent.parent)
    return {
        "git_commit": commit, "git_dirty": dirty,
        "python_version": platform.python_version(),
        "torch_version": _version("torch"), "ray_version": _version("ray"),
        "sambench_version": harness.__version__,
        "hostname": socket.gethostname(), "cpu_model": _cpu_model(), "gpu_model": _gpu_model(),
    }


def _git_state(source_root: Path) -> tuple[str | None, bool | None]:
    """HEAD and "tracked files modified" of the repository whose root holds ``harness/``;
    (None, None) for an installed copy that is not a checkout."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=source_root, capture_output=True, text=True,
                                  timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != source_root:
        return None, None
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status)


def _version(package: str) -> str | None:
    try:  # the installed metadata, so neither torch nor Ray gets imported here
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def _gpu_model() -> str | None:
    """NVIDIA models from /proc (no CUDA context, no torch import); else torch.cuda, but only
    when torch is already imported and reports a device."""
    names = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        for line in info.read_text().splitlines():
            if line.startswith("Model:"):
                names.append(line.split(":", 1)[1].strip())
    torch = sys.modules.get("torch")
    if not names and torch is not None and torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    counts = Counter(names)
    return ", ".join(f"{n} x {name}" if n > 1 else name for name, n in counts.items()) or None
