"""What every measurement of the suite shares: sizes, the alternating timer, and the
result type that becomes Parquet rows.

Why alternate: on a shared machine the load drifts over seconds, so two sides timed one
after the other in blocks see different machines. Each repeat runs every side once, in
an order that rotates from repeat to repeat, and every headline ratio is formed per
repeat (side / reference of the same repeat) before its median is taken.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

SIZES = ("tiny", "quick", "full")  # tiny: the tests; quick: `sambench bench --quick`


@dataclass(frozen=True)
class Context:
    """The run's settings, handed to every measurement."""

    size: str = "quick"
    device: torch.device = torch.device("cpu")

    def pick(self, tiny, quick, full):
        """The value for this run's size."""
        return {"tiny": tiny, "quick": quick, "full": full}[self.size]

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


@dataclass(frozen=True)
class Headline:
    """A ratio of two sides of one measurement, and its goal (None: reported only).

    ``speedup`` flips the ratio to reference / side, for goals stated as "x times faster".
    """

    side: str
    reference: str
    goal: float | None = None
    speedup: bool = False


@dataclass
class Measurement:
    """Raw values (seconds unless ``unit`` says otherwise) per side, one per repeat."""

    item: int
    bench: str
    case: str
    values: dict[str, list[float]]
    headlines: list[Headline]
    warmup: int
    unit: str = "s"
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)  # facts beside the timings (HVPs, MiB)


def alternate(ctx: Context, sides: dict[str, Callable[[], object]], repeats: int,
              warmup: int = 1) -> dict[str, list[float]]:
    """Run each side ``warmup + repeats`` times, taking turns in a rotating order. A side
    that returns a float returns its own seconds (to leave set-up out); anything else it
    returns is ignored and the whole call is timed."""
    names = list(sides)
    values: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(warmup + repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            ctx.sync()
            start = time.perf_counter()
            own = sides[name]()
            ctx.sync()
            seconds = own if isinstance(own, float) else time.perf_counter() - start
            if repeat >= warmup:
                values[name].append(seconds)
    return values


def timed(ctx: Context, fn: Callable[[], object]) -> float:
    """Seconds of one call, the device synchronised before both clock reads."""
    ctx.sync()
    start = time.perf_counter()
    fn()
    ctx.sync()
    return time.perf_counter() - start
