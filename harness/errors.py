"""Errors and value checks shared by every registry and by the configuration.

This module sits below everything else in ``harness``: registries (data, models, optim,
samplers, sharpness) import it, and ``harness.config`` imports the registries, so the
import graph has no circle.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Iterable

MAX_VALUE_CHARS = 200  # a value is quoted in an error message at most this long


class ConfigError(ValueError):
    """A user-facing configuration mistake: one line naming the field and what is allowed."""

    def __init__(self, field: str, value: Any, allowed: str):
        self.field, self.value, self.allowed = field, value, allowed
        shown = repr(value)
        if len(shown) > MAX_VALUE_CHARS:
            shown = shown[:MAX_VALUE_CHARS] + "..."
        super().__init__(f"{field}: {shown} is not valid; allowed: {allowed}")

    def __reduce__(self):  # Ray copies and pickles exceptions across processes
        return (type(self), (self.field, self.value, self.allowed))


class SpecError(ConfigError):
    """A mistake in a spec or an override; ``field`` is the path in the spec."""


def is_number(value: Any) -> bool:
    """A finite int or float that is not a bool (YAML's true is no number)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def did_you_mean(name: Any, known: Iterable[str]) -> str:
    """" (did you mean 'x'?)" for the closest known name, or "" when none is close."""
    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
