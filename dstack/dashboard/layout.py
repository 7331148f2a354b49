"""A layered (Sugiyama-style) drawing of a directed acyclic graph, for the lineage page.

Four steps, each the textbook one kept small:

1. layers: the longest path from a source, then each source moved right next to the first node
   that consumes it (a tag made long ago and used by the last run does not stretch across);
2. an edge that spans several layers gets a waypoint in each layer between, which takes a slot
   in that layer's column like a node (so it runs between boxes, never through one);
3. order within a layer: barycenter sweeps down and up, keeping the order with fewest crossings;
4. rows: each node pulled toward the mean height of its neighbours, then pushed apart so boxes
   and waypoints keep a gap.

Edges are drawn as straight runs through the columns (at a waypoint's height) joined by curves
in the gaps between columns, where there are no boxes: no edge crosses a box.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

SWEEPS = 8  # barycenter passes (each one down and one up)
ROW_PASSES = 6  # rounds of pulling rows toward neighbours


@dataclass
class Box:
    """A node to place: ``width`` × ``height``; ``x``, ``y`` (top left) and ``layer`` are set."""

    id: str
    width: int
    height: int
    layer: int = 0
    x: float = 0
    y: float = 0


@dataclass
class Route:
    source: str
    target: str
    path: str = ""
    points: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class Spacing:
    column_gap: int = 90
    row_gap: int = 18
    waypoint: int = 10  # the height a waypoint takes in its column
    margin: int = 16


@dataclass
class _Slot:
    """A node or a waypoint in one layer's column."""

    id: str
    layer: int
    height: int
    box: Box | None = None
    y: float = 0  # centre
    order: float = 0
    ins: list[str] = field(default_factory=list)
    outs: list[str] = field(default_factory=list)


def layout(
    boxes: list[Box], edges: list[tuple[str, str]], spacing: Spacing | None = None
) -> tuple[list[Route], int, int]:
    """Place ``boxes`` (in place) and route ``edges`` between them; the drawing's width and
    height. The graph must have no cycles (the lineage's edges follow time)."""
    gaps = spacing or Spacing()
    if not boxes:
        return [], 0, 0
    by_id = {box.id: box for box in boxes}
    _assign_layers(by_id, edges)
    slots, chains = _with_waypoints(by_id, edges, gaps)
    layers = _order(slots)
    _assign_rows(layers, slots, gaps)
    column_width = max(box.width for box in boxes)
    top = min(slot.y - slot.height / 2 for slot in slots.values())
    for slot in slots.values():
        slot.y += gaps.margin - top
        if slot.box is not None:
            slot.box.x = gaps.margin + slot.layer * (column_width + gaps.column_gap)
            slot.box.y = slot.y - slot.box.height / 2
    routes = [_route(chain, slots, column_width, gaps) for chain in chains]
    width = gaps.margin * 2 + (max(layers) + 1) * column_width + max(layers) * gaps.column_gap
    height = max(slot.y + slot.height / 2 for slot in slots.values()) + gaps.margin
    return routes, int(width), int(height)


def _assign_layers(boxes: dict[str, Box], edges: list[tuple[str, str]]) -> None:
    inputs: dict[str, list[str]] = {key: [] for key in boxes}
    outputs: dict[str, list[str]] = {key: [] for key in boxes}
    for source, target in edges:
        inputs[target].append(source)
        outputs[source].append(target)
    for box in boxes.values():
        box.layer = 0
    for _ in range(len(boxes)):  # relax until stable (no cycles: at most one round per node)
        changed = False
        for key, box in boxes.items():
            layer = max((boxes[s].layer + 1 for s in inputs[key]), default=0)
            if layer != box.layer:
                box.layer, changed = layer, True
        if not changed:
            break
    for key, box in boxes.items():  # a source sits just before its first consumer
        if not inputs[key] and outputs[key]:
            box.layer = min(boxes[t].layer for t in outputs[key]) - 1
    first = min(box.layer for box in boxes.values())
    for box in boxes.values():
        box.layer -= first


def _with_waypoints(
    boxes: dict[str, Box], edges: list[tuple[str, str]], gaps: Spacing
) -> tuple[dict[str, _Slot], list[list[str]]]:
    slots = {key: _Slot(key, box.layer, box.height, box) for key, box in boxes.items()}
    chains = []
    for number, (source, target) in enumerate(edges):
        chain = [source]
        for layer in range(boxes[source].layer + 1, boxes[target].layer):
            waypoint = f"\0{number}:{layer}"
            slots[waypoint] = _Slot(waypoint, layer, gaps.waypoint)
            chain.append(waypoint)
        chain.append(target)
        for a, b in itertools.pairwise(chain):
            slots[a].outs.append(b)
            slots[b].ins.append(a)
        chains.append(chain)
    return slots, chains


def _order(slots: dict[str, _Slot]) -> dict[int, list[_Slot]]:
    layers: dict[int, list[_Slot]] = {}
    for slot in slots.values():
        layers.setdefault(slot.layer, []).append(slot)
    for column in layers.values():
        for index, slot in enumerate(column):
            slot.order = index
    best = {layer: list(column) for layer, column in layers.items()}
    fewest = _crossings(layers, slots)
    keys = sorted(layers)
    for _ in range(SWEEPS):
        for sweep, neighbours in ((keys[1:], "ins"), (keys[-2::-1], "outs")):
            for layer in sweep:
                column = layers[layer]
                for slot in column:
                    near = [slots[n].order for n in getattr(slot, neighbours)]
                    slot.y = sum(near) / len(near) if near else slot.order  # y: a scratch key
                column.sort(key=lambda s: s.y)
                for index, slot in enumerate(column):
                    slot.order = index
        count = _crossings(layers, slots)
        if count < fewest:
            fewest, best = count, {layer: list(column) for layer, column in layers.items()}
        if fewest == 0:
            break
    for column in best.values():
        for index, slot in enumerate(column):
            slot.order = index
    return best


def _crossings(layers: dict[int, list[_Slot]], slots: dict[str, _Slot]) -> int:
    count = 0
    for column in layers.values():
        pairs = sorted((slot.order, slots[out].order) for slot in column for out in slot.outs)
        for i, (a1, b1) in enumerate(pairs):
            count += sum(1 for a2, b2 in pairs[i + 1 :] if a2 > a1 and b2 < b1)
    return count


def _assign_rows(layers: dict[int, list[_Slot]], slots: dict[str, _Slot], gaps: Spacing) -> None:
    for column in layers.values():
        _stack(column, gaps, wanted=None)
    keys = sorted(layers)
    for _ in range(ROW_PASSES):
        for sweep in (keys, keys[::-1]):
            for layer in sweep:
                column = layers[layer]
                wanted = []
                for slot in column:
                    near = [slots[n].y for n in (*slot.ins, *slot.outs)]
                    wanted.append(sum(near) / len(near) if near else slot.y)
                _stack(column, gaps, wanted)


def _stack(column: list[_Slot], gaps: Spacing, wanted: list[float] | None) -> None:
    """Centres in order, as close to ``wanted`` as the gaps allow (top to bottom, then the
    overlap split evenly by shifting the whole column back toward where it was wanted)."""
    position = 0.0
    for index, slot in enumerate(column):
        target = wanted[index] if wanted is not None else position + slot.height / 2
        if index:
            previous = column[index - 1]
            lowest = previous.y + previous.height / 2 + gaps.row_gap + slot.height / 2
            target = max(target, lowest)
        slot.y = target
        position = slot.y + slot.height / 2 + gaps.row_gap
    if wanted is not None:
        drift = sum(s.y - w for s, w in zip(column, wanted, strict=True)) / len(column)
        for slot in column:
            slot.y -= drift


def _route(chain: list[str], slots: dict[str, _Slot], column_width: int, gaps: Spacing) -> Route:
    first, last = slots[chain[0]], slots[chain[-1]]
    assert first.box is not None and last.box is not None
    points: list[tuple[float, float]] = [(first.box.x + first.box.width, first.y)]
    for key in chain[1:-1]:
        slot = slots[key]
        left = gaps.margin + slot.layer * (column_width + gaps.column_gap)
        points += [(left, slot.y), (left + column_width, slot.y)]
    points.append((last.box.x, last.y))
    path = [f"M{points[0][0]:.0f},{points[0][1]:.0f}"]
    for index in range(1, len(points)):
        (x1, y1), (x2, y2) = points[index - 1], points[index]
        if index % 2:  # across a gap between columns: a curve, level at both ends
            bend = (x2 - x1) / 2
            path.append(f"C{x1 + bend:.0f},{y1:.0f} {x2 - bend:.0f},{y2:.0f} {x2:.0f},{y2:.0f}")
        else:  # through a column, at a waypoint's height
            path.append(f"L{x2:.0f},{y2:.0f}")
    return Route(chain[0], chain[-1], " ".join(path), points)
