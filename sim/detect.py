"""Deadlock detection at the end of a run: who is blocked for good, and the wait-for graph that says why.

Once nothing is scheduled, a thread that has not ended waits for something no one will do. The wait-for
graph (networkx) has threads and resources as nodes: a thread points at what it waits on, a resource at
whoever holds it (a lock's holders, the worker handling a request, every busy worker of a pool at its cap,
the thread that is to complete a completion). A cycle in it is the deadlock; without one, the blocked
threads wait on a thread that ended holding something (it was cancelled).
"""

from __future__ import annotations

from functools import cached_property

import networkx as nx

from vfslab.sim.world import World

PASS, DEADLOCK = "pass", "deadlock"


def _node(world: World, x: object) -> str:
    if isinstance(x, str):
        return f"{x} (cancelled)" if x in world.dead else x
    return f"{x.kind} {x.name}"


def wait_for_graph(world: World) -> nx.DiGraph:
    graph = nx.DiGraph()
    blocked = set(world.blocked())
    todo = [(thread, resource) for thread, resource in world.waits.items() if thread in blocked]
    seen: set[int] = set()
    while todo:
        waiter, resource = todo.pop()
        graph.add_edge(_node(world, waiter), _node(world, resource))
        if id(resource) in seen:
            continue
        seen.add(id(resource))
        for holder in resource.holders():
            graph.add_edge(_node(world, resource), _node(world, holder))
            if not isinstance(holder, str):
                todo.append((resource, holder))
            elif holder in world.waits and holder in blocked:
                todo.append((holder, world.waits[holder]))
    return graph


class Finding:
    """How a run ended: `verdict`, the threads `blocked` for good, and (worked out when asked) the wait-for
    `graph` and its `cycle`."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.blocked = world.blocked()
        self.verdict = DEADLOCK if self.blocked else PASS

    @cached_property
    def graph(self) -> nx.DiGraph:
        return wait_for_graph(self.world)

    @cached_property
    def cycle(self) -> list[str]:
        """The wait-for cycle, as its nodes in order (empty if none)."""
        try:
            return [edge[0] for edge in nx.find_cycle(self.graph)]
        except nx.NetworkXNoCycle:
            return []

    def explain(self) -> str:
        if self.verdict == PASS:
            return "every thread ended"
        if self.cycle:
            why = "deadlock: " + " -> ".join([*self.cycle, self.cycle[0]])
        else:
            ends = [n for n in self.graph.nodes if self.graph.out_degree(n) == 0]
            why = f"deadlock: {', '.join(self.blocked)} blocked for good, waiting on {', '.join(sorted(ends))}"
        joins = [f"{t} waits to join {w.name}" for t, w in self.world.waits.items()
                 if t in self.blocked and w.kind == "join"]
        return why + (f"; the daemon cannot exit ({', '.join(joins)})" if joins else "")


def examine(world: World) -> Finding:
    return Finding(world)
