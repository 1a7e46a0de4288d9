"""Errors and value checks shared by every registry and by the configuration.

This module sits below everything else in ``harness``: registries (data, models, optim,
samplers, sharpness) import it, and ``harness.config`` imports the registries, so the
import graph has no circle.
"""

from __future__ import annotations

import math
from typing import Any


class ConfigError(ValueError):
    """A user-facing configuration mistake: one line naming the field and what is allowed."""

    def __init__(self, field: str, value: Any, allowed: str):
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(f"{field}: {value!r} is not valid; allowed: {allowed}")

    def __reduce__(self):  # Ray copies and pickles exceptions across processes
        return (type(self), (self.field, self.value, self.allowed))


def is_number(value: Any) -> bool:
    """A finite int or float that is not a bool (YAML's true is no number)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
