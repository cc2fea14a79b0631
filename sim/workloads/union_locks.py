"""Union mounts' locking (seed 003, "Locking strategy"): lookup takes the top directory's i_mutex, then the
lower one's; copy-up holds the parent's while it looks at the lower file; rename holds the file system's
rename mutex and both parents. With two unions of the same two file systems, A over B and B over A, taking
locks top to bottom orders A before B in one and B before A in the other.

`ops` are operations, each in a thread of its own, written `lookup A/B` (in the union with A on top of B),
`copyup B/A`, `rename A/B`. `order` is `top-down` (as written) or `global` (every operation takes its locks
in one fixed order: by file system name, the fix). `sequential` runs the operations one after another: no
run can deadlock then, but the lock-order graph still shows an inversion.
"""

from __future__ import annotations

from collections.abc import Generator

from vfslab.sim.sync import LockOrder, Mutex
from vfslab.sim.world import World

ORDERS = ("top-down", "global")
OPS = ("lookup", "copyup", "rename")
DEFAULTS = {"ops": ["lookup A/B", "lookup B/A"], "order": "top-down", "sequential": False}


def _parse(op: str) -> tuple[str, str, str]:
    try:
        name, stack = op.split()
        top, lower = stack.split("/")
    except ValueError:
        raise ValueError(f"union operation {op!r}: write it as `lookup A/B` (top/lower)") from None
    if name not in OPS or not top or not lower or top == lower:
        raise ValueError(f"union operation {op!r}: one of {', '.join(OPS)} on two different file systems")
    return name, top, lower


def build(world: World, params: dict, order: LockOrder | None = None) -> None:
    if params["order"] not in ORDERS:
        raise ValueError(f"lock order {params['order']!r}: one of {', '.join(ORDERS)}")
    ops = [_parse(op) for op in params["ops"]]
    locks: dict[str, Mutex] = {}

    def lock(name: str, klass: str) -> Mutex:
        if name not in locks:
            locks[name] = Mutex(world, name, klass, order)
        return locks[name]

    def needed(name: str, top: str, lower: str) -> list[Mutex]:
        """The locks an operation takes, in the order the seed's strategy takes them."""
        parents = [lock(f"{top}:/d", f"{top}.i_mutex"), lock(f"{lower}:/d", f"{lower}.i_mutex")]
        if name == "rename":
            return [lock(f"{top}.rename", f"{top}.s_vfs_rename_mutex"), lock(f"{top}:/d", f"{top}.i_mutex"),
                    lock(f"{top}:/e", f"{top}.i_mutex"), parents[1]]
        return parents

    previous = None

    def operation(me: str, name: str, top: str, lower: str, after) -> Generator:
        if after is not None:
            yield after
        held = needed(name, top, lower)
        if params["order"] == "global":
            held.sort(key=lambda m: (m.klass.split(".")[0], m.klass.split(".")[1] != "s_vfs_rename_mutex", m.name))
        for m in held:
            yield m.acquire(me)
        yield world.timeout(0)  # the work itself
        for m in reversed(held):
            m.release(me)

    for i, (name, top, lower) in enumerate(ops, 1):
        me = f"op-{i}"
        previous = world.spawn(me, operation(me, name, top, lower, previous if params["sequential"] else None))
