"""User extensions named by import path in a spec (``dataset: mypkg.data:load``).

A spec is data: the path is only ever imported, never evaluated. Resolution happens
while the config is validated, so a typo fails in one line before any trial starts.
"""

from __future__ import annotations

import importlib
import re
from typing import Any, Callable, Mapping

from harness.errors import ConfigError

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_import_path(value: Any) -> bool:
    """``module.path:attr`` (the colon tells an import path from a registry name)."""
    return isinstance(value, str) and bool(_IMPORT_PATH.match(value))


def load_object(field: str, path: str) -> Any:
    """The object that ``module.path:attr`` names; a one-line ConfigError otherwise."""
    if not is_import_path(path):
        raise ConfigError(field, path, "a registered name or an import path 'package.module:attribute'")
    module_name, _, attr_path = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(field, path, f"an importable module (importing {module_name!r} failed: {exc})") from None
    for attr in attr_path.split("."):
        if not hasattr(obj, attr):
            raise ConfigError(field, path, f"an attribute that exists ({module_name!r} has no {attr_path!r})")
        obj = getattr(obj, attr)
    return obj


def resolve(field: str, name: str, registry: Mapping[str, Callable], role: str, signature: str) -> Callable:
    """A registry's entry, or the callable a plug-in's import path names (``role`` is what
    the callable is, e.g. "loader"; ``signature`` how sambench calls it)."""
    if name in registry:
        return registry[name]
    if not is_import_path(name):
        raise ConfigError(field, name, ", ".join(registry) + f", or an import path 'package.module:{role}'")
    obj = load_object(field, name)
    if not callable(obj):
        raise ConfigError(field, name, f"an import path naming a callable {role}{signature}")
    return obj
