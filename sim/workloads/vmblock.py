"""vmblock (seed 001): readlinks of a blocked entry wait until the control write that deletes the block.

A controller adds a block, `readers` clients readlink the entry, then the controller deletes the block. In the
`upstream` design a readlink's handler waits on the block's completion in its worker; in the `deferred`
design it parks the request and returns its worker, and the delete answers every parked request.
"""

from __future__ import annotations

from collections.abc import Generator

import simpy

from vfslab.sim.fuse import Daemon, Design, Request
from vfslab.sim.sync import Completion, LockOrder
from vfslab.sim.world import World

DESIGNS = ("upstream", "deferred")
DEFAULTS = {"readers": 10, "design": "upstream", "libfuse": "3.12", "max_threads": 10, "cancel": "while-reading",
            "jitter": 0}


class Blocks:
    def __init__(self, world: World, design: str) -> None:
        if design not in DESIGNS:
            raise ValueError(f"vmblock design {design!r}: one of {', '.join(DESIGNS)}")
        self.world = world
        self.design = design
        self.blocks: dict[str, Completion] = {}
        self.parked: dict[str, list[Request]] = {}

    def add(self, daemon: Daemon, request: Request, worker: str) -> Generator:
        path, = request.args
        self.blocks[path] = Completion(self.world, f"block {path}", owner=request.client)
        yield from daemon.io(worker)
        daemon.reply(request, 0, worker)

    def readlink(self, daemon: Daemon, request: Request, worker: str) -> Generator:
        path, = request.args
        yield from daemon.io(worker)  # lstat of the target
        block = self.blocks.get(path)
        if block is not None and not block.done:
            if self.design == "deferred":
                request.parked_on = block
                self.parked.setdefault(path, []).append(request)
                self.world.log(worker, "parks", repr(request))
                return
            yield block.wait(worker)
        daemon.reply(request, path, worker)

    def delete(self, daemon: Daemon, request: Request, worker: str) -> Generator:
        path, = request.args
        yield from daemon.io(worker)
        self.blocks.pop(path).complete_all(worker)
        for parked in self.parked.pop(path, []):
            daemon.reply(parked, path, worker)
        daemon.reply(request, 0, worker)


def build(world: World, params: dict, order: LockOrder | None = None) -> Daemon:
    blocks = Blocks(world, params["design"])
    daemon = Daemon(world, Design.of(params),
                    {"add": blocks.add, "readlink": blocks.readlink, "delete": blocks.delete})
    added = world.event()
    sent = [world.event() for _ in range(params["readers"])]

    def controller() -> Generator:
        yield from daemon.call("controller", "add", "/tmp/VMwareDnD/x")
        added.succeed()
        yield simpy.AllOf(world, sent)  # every readlink is on its way
        yield from daemon.call("controller", "delete", "/tmp/VMwareDnD/x")

    def reader(i: int) -> Generator:
        yield added
        yield from daemon.call(f"reader-{i}", "readlink", "/tmp/VMwareDnD/x", sent=sent[i - 1])

    world.spawn("controller", controller())
    for i in range(1, params["readers"] + 1):
        world.spawn(f"reader-{i}", reader(i))
    return daemon
