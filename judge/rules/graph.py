"""Graphs of rule ids (``parent``, ``overrules``): finding a cycle. Pure: ids in, ids out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["find_cycle"]


def find_cycle(edges: Mapping[str, Sequence[str]]) -> list[str] | None:
    """The first cycle in a graph of ids (``overrules``, ``parent``): its ids in order, the first repeated at the
    end, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: fully explored
    for root in edges:
        if root in state:
            continue
        path, stack = [root], [iter(edges[root])]
        state[root] = 1
        while stack:  # iterative depth-first search: a long chain of rulings must not hit the recursion limit
            target = next(stack[-1], None)
            if target is None:
                stack.pop()
                state[path.pop()] = 2
            elif state.get(target) == 1:
                return [*path[path.index(target):], target]
            elif target not in state:
                state[target] = 1
                path.append(target)
                stack.append(iter(edges.get(target, ())))
    return None
