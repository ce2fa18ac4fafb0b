"""YAML as PyYAML's safe loader reads it, except that a key given twice in one mapping is
an error naming the key and its lines (PyYAML silently keeps the last one, so a manifest
with two ``nTrials`` would run with whichever came last)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode

MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKeyError(yaml.YAMLError):
    """A mapping with the same key twice."""

    def __init__(self, key: Any, line: int, first_line: int) -> None:
        super().__init__(
            f"line {line}: key {key!r} appears twice in the same mapping (first on line "
            f"{first_line}); keep only one"
        )
        self.key, self.line, self.first_line = key, line, first_line


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == MERGE_TAG or not isinstance(key_node, ScalarNode):
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKeyError(key, line, seen[key])
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_all(text: str) -> Iterator[Any]:
    """The documents of ``text``; raises :class:`yaml.YAMLError` (a
    :class:`DuplicateKeyError` for a repeated key)."""
    return yaml.load_all(text, Loader=_UniqueKeyLoader)
