"""YAML for specs, read as data and nothing else.

``load_yaml`` is PyYAML's safe loader (no Python objects can be built) that also refuses
duplicate keys (PyYAML keeps the last one silently) and documents whose anchors expand to
more than MAX_YAML_NODES values (a "billion laughs" file is refused before it is walked),
and reads ``1e-3`` as a float. ``dump_yaml`` writes YAML that it reads back to the same
values. Every mistake is a one-line SpecError naming the source and line.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from harness.errors import SpecError

MAX_YAML_NODES = 100_000        # values after expanding anchors: refuses "billion laughs" at once

# PyYAML follows YAML 1.1, where 1e-3 and 5e-4 are strings; accept them as floats (YAML 1.2),
# and make the dumper quote strings that look like them so canonical text round-trips.
_FLOAT_E = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


class _Loader(yaml.SafeLoader):
    """Safe loader that rejects duplicate keys (PyYAML silently keeps the last one)."""

    source = "<spec>"

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable key: the base class reports it
                continue
            if duplicate:
                raise SpecError(f"{self.source} line {key_node.start_mark.line + 1}", key, "each key once per mapping")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


    def compose_document(self) -> yaml.Node:
        """Refuse a document whose anchors expand to more than MAX_YAML_NODES values before
        anything is built from it: aliases cost nothing to parse, but every later walk of
        the data (checks, error messages, hashing) would expand them."""
        node = super().compose_document()
        sizes: dict[int, int] = {}

        def size(n: yaml.Node) -> int:
            if id(n) not in sizes:
                sizes[id(n)] = 0  # a recursive alias counts once (then refused as a mapping cycle)
                if isinstance(n, yaml.SequenceNode):
                    total = 1 + sum(size(child) for child in n.value)
                elif isinstance(n, yaml.MappingNode):
                    total = 1 + sum(size(k) + size(v) for k, v in n.value)
                else:
                    total = 1
                sizes[id(n)] = min(total, MAX_YAML_NODES + 1)
            return sizes[id(n)]

        if node is not None and size(node) > MAX_YAML_NODES:
            raise SpecError(self.source, "<anchors and aliases>",
                            f"a document of at most {MAX_YAML_NODES} values once anchors are expanded")
        return node


class _Dumper(yaml.SafeDumper):
    pass


for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_E, list("-+.0123456789"))


def load_yaml(text: str, source: str = "<yaml>") -> Any:
    """Safe-load YAML with 1e-3 read as a float and duplicate keys refused; a syntax error
    becomes a one-line SpecError naming ``source`` and the line."""
    loader = _Loader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        lines = text.splitlines()
        line = lines[mark.line].strip() if mark is not None and mark.line < len(lines) else ""
        where = f"{source} line {mark.line + 1}" if mark is not None else source
        raise SpecError(where, line, f"valid YAML ({' '.join(str(err.problem).split())})") from None
    except yaml.YAMLError as err:
        raise SpecError(source, "", f"valid YAML ({' '.join(str(err).split())})") from None
    finally:
        loader.dispose()


def dump_yaml(data: Any) -> str:
    """Block-style YAML in the given key order that ``load_yaml`` reads back unchanged."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=None, allow_unicode=True, width=1000)
