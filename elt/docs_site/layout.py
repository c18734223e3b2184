"""Where each node of the lineage graph is drawn: layers from left to right, ordered to cross few edges.

`layout_graph` places a node in the layer of its longest path from a node without inputs, then orders each
layer by the mean position of its neighbours (barycenters), sweeping down and up a few times. Leaves that
only check or use one node (tests) go in the gap right of their parent's layer, beside it, so that they
neither widen the layers nor move the nodes data flows through. Linear in nodes and edges per sweep: a
graph of 3,000 nodes is laid out in a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

NODE_WIDTH = 160
NODE_HEIGHT = 28
LAYER_GAP = 400  # from one layer's left edge to the next; the gap between holds the side nodes
ROW_GAP = 40  # from one node's top to the next in a layer
SIDE_OFFSET = 200  # a side node's x from its parent layer's x
SWEEPS = 4


@dataclass(frozen=True)
class Layout:
    """Top-left corners by node index, and the size of the whole drawing."""

    positions: tuple[tuple[int, int], ...]
    width: int
    height: int
    layers: int


def layout_graph(count: int, edges: Sequence[tuple[int, int]], side: Sequence[bool] | None = None) -> Layout:
    """Lay out `count` nodes joined by `edges` (source index, target index), data flowing left to right.

    `side[i]` marks node i as a side node (a test): it is drawn beside its deepest input instead of in a
    layer of its own, and is not taken into account for ordering the layers. Cycles are broken where
    found, so any input gives a layout.
    """
    is_side = list(side) if side is not None else [False] * count
    succ: list[list[int]] = [[] for _ in range(count)]
    pred: list[list[int]] = [[] for _ in range(count)]
    seen: set[tuple[int, int]] = set()
    for s, t in edges:
        if s == t or (s, t) in seen:
            continue
        seen.add((s, t))
        if is_side[t] and not is_side[s]:
            pred[t].append(s)  # a side node hangs on its inputs; it feeds nothing in the layers
            continue
        if is_side[s] or is_side[t]:
            continue
        succ[s].append(t)
        pred[t].append(s)

    main = [i for i in range(count) if not is_side[i]]
    depth = _longest_path_depths(count, main, succ, pred)
    layers: list[list[int]] = [[] for _ in range(max((depth[i] for i in main), default=-1) + 1)]
    for i in main:
        layers[depth[i]].append(i)

    y = [0.0] * count
    tallest = max((len(layer) for layer in layers), default=0)
    _place(layers, y, tallest)
    for sweep in range(SWEEPS):
        downward = sweep % 2 == 0
        order = layers[1:] if downward else layers[-2::-1]
        for layer in order:
            neighbours = pred if downward else succ
            _sort_by_barycenter(layer, neighbours, y)
            _place_layer(layer, y, tallest)

    positions: list[tuple[int, int]] = [(0, 0)] * count
    for index, layer in enumerate(layers):
        for i in layer:
            positions[i] = (index * LAYER_GAP, round(y[i]))
    height = tallest * ROW_GAP
    _place_side_nodes(count, is_side, pred, depth, y, positions, len(layers))
    bottom = max((p[1] + NODE_HEIGHT for p in positions), default=0)
    width = max((p[0] + NODE_WIDTH for p in positions), default=0)
    return Layout(tuple(positions), width, max(height, bottom), len(layers))


def _longest_path_depths(
    count: int, main: list[int], succ: list[list[int]], pred: list[list[int]]
) -> list[int]:
    """The length of the longest path reaching each node (Kahn's order; a cycle is cut at its first node
    in input order, which then sits one layer right of its inputs already placed)."""
    depth = [0] * count
    remaining = [len(pred[i]) for i in range(count)]
    done = [False] * count
    ready = [i for i in main if remaining[i] == 0]
    next_forced = 0
    placed = 0
    while placed < len(main):
        if not ready:
            while done[main[next_forced]]:
                next_forced += 1
            forced = main[next_forced]
            depth[forced] = 1 + max((depth[p] for p in pred[forced] if done[p]), default=-1)
            ready.append(forced)
        i = ready.pop()
        if done[i]:
            continue
        done[i] = True
        placed += 1
        for t in succ[i]:
            if done[t]:
                continue
            depth[t] = max(depth[t], depth[i] + 1)
            remaining[t] -= 1
            if remaining[t] == 0:
                ready.append(t)
    return depth


def _place(layers: list[list[int]], y: list[float], tallest: int) -> None:
    for layer in layers:
        _place_layer(layer, y, tallest)


def _place_layer(layer: list[int], y: list[float], tallest: int) -> None:
    """Stack a layer's nodes in its order, centred on the tallest layer."""
    top = (tallest - len(layer)) * ROW_GAP / 2
    for row, i in enumerate(layer):
        y[i] = top + row * ROW_GAP


def _sort_by_barycenter(layer: list[int], neighbours: list[list[int]], y: list[float]) -> None:
    """Order a layer by the mean height of each node's neighbours in the other layers; a node without
    neighbours keeps its height, so it stays about where it was."""
    keys: dict[int, float] = {}
    for i in layer:
        near = neighbours[i]
        keys[i] = sum(y[n] for n in near) / len(near) if near else y[i]
    layer.sort(key=keys.__getitem__)


def _place_side_nodes(
    count: int,
    is_side: list[bool],
    pred: list[list[int]],
    depth: list[int],
    y: list[float],
    positions: list[tuple[int, int]],
    layer_count: int,
) -> None:
    """Put each side node in the gap right of its deepest input's layer, as near its inputs' height as the
    other side nodes of that gap allow."""
    gaps: dict[int, list[tuple[float, int]]] = {}
    orphans: list[int] = []
    for i in range(count):
        if not is_side[i]:
            continue
        inputs = [p for p in pred[i] if not is_side[p]]
        if not inputs:
            orphans.append(i)
            continue
        layer = max(depth[p] for p in inputs)
        height = sum(y[p] for p in inputs) / len(inputs)
        gaps.setdefault(layer, []).append((height, i))
    for layer, wanted in gaps.items():
        wanted.sort()
        floor = float("-inf")
        for at, i in wanted:
            top = max(at, floor)
            positions[i] = (layer * LAYER_GAP + SIDE_OFFSET, round(top))
            floor = top + ROW_GAP
    # Side nodes without inputs (a singular test on nothing known) go in a column of their own at the right.
    for row, i in enumerate(orphans):
        positions[i] = (layer_count * LAYER_GAP, row * ROW_GAP)
