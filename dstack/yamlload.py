"""Loading YAML a user wrote, with bounds: no alias bomb, no nesting that exhausts the stack.

YAML aliases share one node, so a file of a few hundred bytes can stand for billions of values
once anything walks it (validation, a printed value): each node's *expanded* size is counted
as the document is composed, and a document past :data:`MAX_VALUES` values is refused at the
node that crosses it. Composing is recursive, so nesting is bounded too (:data:`MAX_DEPTH`);
an alias of a node inside itself is refused. Each refusal is a ``yaml.YAMLError`` with the
line it was found at, which callers turn into their one-line error.
"""

from __future__ import annotations

from typing import Any

import yaml

#: levels of nesting (mappings and lists); a workflow file needs fewer than ten
MAX_DEPTH = 64
#: values of a document once its aliases are expanded
MAX_VALUES = 100_000


class BoundError(yaml.composer.ComposerError):
    """A document past a bound (too deep, too large once expanded, a recursive alias)."""


class BoundedSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with the bounds above."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise BoundError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels: flatten it", mark
                )
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is not None:
            self._measure(node)
        return node

    def _measure(self, node: yaml.Node) -> None:
        if id(node) in self._sizes:
            return
        size = 1
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        for child in children:
            known = self._sizes.get(id(child))
            if known is None:  # composed but not measured: an alias of a node inside itself
                raise BoundError(
                    None, None, "an alias refers to the node it is in", child.start_mark
                )
            size += known
        if size > MAX_VALUES:
            raise BoundError(
                None,
                None,
                f"its aliases expand it past {MAX_VALUES:,} values (an alias bomb?)",
                node.start_mark,
            )
        self._sizes[id(node)] = size


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` within the bounds."""
    return yaml.load(text, Loader=BoundedSafeLoader)  # a SafeLoader subclass: safe
