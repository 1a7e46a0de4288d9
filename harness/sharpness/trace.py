"""Hutchinson's estimate of the Hessian trace."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from harness.sharpness.operator import HessianOperator, clock


@dataclass
class TraceResult:
    """A Hutchinson trace estimate with the standard error of its sample mean."""

    value: float
    hvps: int
    stderr: float
    seconds: float


def hutchinson_trace(op: HessianOperator, *, generator: torch.Generator, samples: int = 20) -> TraceResult:
    """tr(H) ~ mean z^T H z over Rademacher probes z; its variance per probe is
    2 * sum_{i != j} H_ij^2, so a diagonal Hessian gives the exact trace. Probes are exact
    in any dtype; each z^T H z is summed in float64."""
    if samples < 2:
        raise ValueError(f"samples must be >= 2 for a standard error, got {samples}")
    start, hvps0 = clock(op), op.hvps
    estimates = []
    for _ in range(samples):
        z = torch.randint(0, 2, (op.dim,), generator=generator, device=generator.device)
        z = (2 * z - 1).to(device=op.device, dtype=torch.float64)
        estimates.append(float(z @ op.matvec(z).to(torch.float64)))
    values = np.array(estimates)
    stderr = float(values.std(ddof=1) / math.sqrt(samples))
    return TraceResult(float(values.mean()), op.hvps - hvps0, stderr, clock(op) - start)
