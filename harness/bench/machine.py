"""The machine a benchmark ran on: what a reader needs to judge a ratio, and the folder
name its results go under (``benchmarks/perf/results/<machine>/``)."""

from __future__ import annotations

import os
import platform
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from harness.provenance import provenance


def machine_facts(device: torch.device) -> dict[str, Any]:
    """CPU, cores, threads, GPU, driver, library versions and the code's commit."""
    facts = provenance()
    facts |= {
        "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(), "device": str(device),
        "cuda_version": torch.version.cuda, "cudnn_version": None, "gpu_name": None,
        "gpu_memory_gib": None, "gpu_driver": _driver(),
        "bf16_native_cpu": _cpu_has_bf16(),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts |= {"gpu_name": props.name, "gpu_memory_gib": round(props.total_memory / 2 ** 30, 1),
                  "cudnn_version": torch.backends.cudnn.version()}
    return facts


def machine_name(facts: dict[str, Any]) -> str:
    """``cpu-<model>-<n>cores`` or the GPU's name, as a folder name."""
    if facts.get("gpu_name"):
        return _slug(facts["gpu_name"])
    return f"cpu-{_slug(facts.get('cpu_model') or platform.machine())}-{facts['cores']}cores"


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm)\)|\bcpu\b|\bprocessor\b|@.*$", "", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def _driver() -> str | None:
    path = Path("/proc/driver/nvidia/version")
    if not path.exists():
        return None
    match = re.search(r"Kernel Module\s+([\d.]+)", path.read_text())
    return match.group(1) if match else None


def _cpu_has_bf16() -> bool | None:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return "avx512_bf16" in flags or "amx_bf16" in flags
