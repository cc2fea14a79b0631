"""Checking a storage method against the contract: programs in lockstep with `model/storage`, crashed at every
persist point, and read back by a method that has only the bare minimum.

Lockstep: each step runs on the method and on the model; every result and errno is compared, and after each step
that may change something the storage is compared whole: through the method's `dump()` when it has one (every
inode, entry and mapping it holds), otherwise through what its own looking operations show of everything the
model holds (Read Inode of every number handed out, Read Directory of every directory, position by position,
Map Lookup of every source a program can map, contents and symlink targets). Where the contract leaves the method
a choice of states (Clear Inode of an unlinked inode, Init after a Release with no Sync), the storage must be in
one of them, and the model goes on from that one.

Crash (methods with `crash_at`/`persists`): the program runs once in lockstep, noting after each call (a step's,
or one of the calls a lifecycle step or `evict` makes) the persist points passed and what a crash there could leave
(`StorageModel.recoveries`); then once per persist point k, on a fresh copy of the starting storage, the same calls
crashing at k; a new method on what the crash left must Init and show one of the states from just before or just
after the call that was cut short (storage.silent.crash-old-or-new).

Read-only (a method with only the bare minimum, requirement 2): the program runs on `dir:` storage in lockstep;
then the method is given that storage and must show it, with Init, Read Inode, Map Lookup and Read Directory.
"""

from __future__ import annotations

import contextlib
import errno as E
import hashlib
import shutil
import stat
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from vfslab.check.engine.kept import Replay
from vfslab.check.engine.race import Mismatch
from vfslab.check.storage.program import (
    CHANGES,
    CONTRACT,
    CRASH,
    EDGE_NAMES,
    EVICT,
    KINDS,
    LIFECYCLE,
    NAME_PICKS,
    NAMES,
    READ_ONLY,
    SOURCES,
    STRANGER,
    Pick,
    StorageProgram,
    inode_ref,
    looks,
    show,
    slot,
)
from vfslab.impl.ovlfs.storage.method import Inode
from vfslab.impl.pmem.pool import Crash
from vfslab.model.storage import (
    BARE_MINIMUM,
    REQUIRED,
    ROOT_INO,
    Attrs,
    Entry,
    Err,
    Outcome,
    Space,
    State,
    StorageModel,
)
from vfslab.subjects.storage import DIR, StorageSubject

#: the number `"#?"` stands for: one no method hands out in a program's few steps
NEVER_HANDED_OUT = 1 << 30
#: enough to read any file a program writes whole
WHOLE = 1 << 16
#: the operations that return nothing: the seed's ">= 0 on success" is taken for nothing too
NOTHING = ("init", "sync", "release", "clear_inode", "update_inode", "map_inode", "add_dirent", "rename_dirent",
           "unlink_dirent", "set_symlink")
#: what inode a Pick of these kinds stands for, mostly
FITS: dict[str, Callable[[Attrs], bool]] = {
    "file": lambda a: stat.S_ISREG(a.mode),
    "symlink": lambda a: stat.S_ISLNK(a.mode),
    "unlinked": lambda a: a.nlink == 0,
    "mapped": lambda a: a.base is not None or a.storage is not None,
}


@dataclass(frozen=True)
class Raised:
    """The method raised something other than OSError: never what the contract says."""

    what: str

    def __repr__(self) -> str:
        return f"raised {self.what}"


# ---- the interface's records, both ways -----------------------------------------------------------------------

def _pair(value: object) -> tuple[int, int] | None:
    return None if value is None else tuple(value)


def model_value(value: object) -> object:
    """A method's result in the model's vocabulary (Inode -> Attrs, Dirent -> Entry, StatFs -> Space)."""
    if hasattr(value, "mode") and hasattr(value, "nlink"):
        got = {f.name: getattr(value, f.name) for f in fields(Attrs)}
        return Attrs(**got | {"base": _pair(got["base"]), "storage": _pair(got["storage"]),
                              "flags": frozenset(got["flags"])})
    if hasattr(value, "ino") and hasattr(value, "flags"):
        return Entry(value.name, value.ino, frozenset(value.flags))
    if hasattr(value, "bsize"):
        return Space(*(getattr(value, f.name) for f in fields(Space)))
    return value


def inode(attrs: Attrs) -> Inode:
    return Inode(**{f.name: getattr(attrs, f.name) for f in fields(Attrs)})


def digest(data: object) -> object:
    """File contents as compared: their hash (an errno as it is)."""
    return hashlib.sha256(data).hexdigest() if isinstance(data, bytes) else data


def shown(value: object) -> str:
    if isinstance(value, Attrs):
        differs = {f.name: getattr(value, f.name) for f in fields(Attrs) if getattr(value, f.name) != f.default}
        return f"inode({', '.join(f'{k}={v:o}' if k == 'mode' else f'{k}={v!r}' for k, v in differs.items())})"
    if isinstance(value, Entry):
        return f"{value.name!r} -> {value.ino}" + (f" {sorted(value.flags)}" if value.flags else "")
    return repr(value)


def difference(expected: object, actual: object) -> str:
    """What differs, field by field for two inodes."""
    if isinstance(expected, Attrs) and isinstance(actual, Attrs):
        return ", ".join(f"{f.name}: the model says {getattr(expected, f.name)!r}, the method "
                         f"{getattr(actual, f.name)!r}" for f in fields(Attrs)
                         if getattr(expected, f.name) != getattr(actual, f.name))
    return f"the model says {shown(expected)}, the method {shown(actual)}"


# ---- looking at storage -----------------------------------------------------------------------------------------

#: a look: (operation, *args), or ("contents", ino), a file's contents read whole
Look = tuple


def looks_at(model: StorageModel, ops: frozenset[str], numbers: set[int] = frozenset(),
             directories: set[int] = frozenset()) -> list[Look]:
    """What to ask to see everything the model holds (and the `numbers` and `directories` a dump shows besides),
    with the looking operations `ops` the method has."""
    s = model.state
    looks_: list[Look] = [("read_inode", n) for n in [*sorted(s.issued | set(numbers)), NEVER_HANDED_OUT]]
    for d in sorted(set(s.dirs) | set(directories)):
        if "read_directory" in ops:
            looks_ += [("read_directory", d, p) for p in range(1, len(s.dirs.get(d, ())) + 2)]
        else:
            looks_ += [("lookup_dirent", d, name) for name in NAMES]
    looks_ += [("map_lookup", *source) for source in SOURCES]
    for n, attrs in sorted(s.inodes.items()):
        if stat.S_ISREG(attrs.mode) and "read_file" in ops:
            looks_.append(("contents", n))
        elif stat.S_ISLNK(attrs.mode) and "read_symlink" in ops:
            looks_.append(("read_symlink", n))
    return looks_


def ask_model(model: StorageModel, look: Look) -> Outcome:
    if look[0] == "contents":
        read = model.read_file(look[1], 0, WHOLE)
        return Outcome(digest(read.result), read.rules)
    return getattr(model, look[0])(*look[1:])


@dataclass
class Dumped:
    """The looks answered from a method's `dump()`: its tables whole (impl/ovlfs/storage/tables.py, `dump`)."""

    inodes: dict[int, dict]
    dirs: dict[int, list[Entry]]
    maps: dict[tuple, int]

    @classmethod
    def of(cls, method: object) -> Dumped | None:
        """The method's dump, if it has one in our tables' shape (else, or if the dump fails, the looks are asked of
        the method's own operations)."""
        if not callable(getattr(method, "dump", None)):
            return None
        try:
            return cls._of(method.dump())
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    @classmethod
    def _of(cls, dump: dict) -> Dumped:
        dirs = {int(d): [Entry(e["name"], e["ino"], frozenset(e["flags"])) for e in sorted(es, key=lambda e: e["pos"])]
                for d, es in dump["dirs"].items()}
        maps = {(m["fs"], m["dev"], m["ino"]): m["ovlfs"] for m in dump["mappings"]}
        return cls({int(n): r for n, r in dump["inodes"].items()}, dirs, maps)

    def attrs(self, n: int) -> Attrs:
        r = self.inodes[n]
        return Attrs(**{f.name: r[f.name] for f in fields(Attrs) if f.name not in ("base", "storage", "flags")},
                     base=_pair(r["base"]), storage=_pair(r["storage"]), flags=frozenset(r["flags"]))

    def ask(self, look: Look) -> object:
        name, n, *rest = look
        if name == "map_lookup":
            found = self.maps.get((n, *rest))
            return Err(E.ENOENT) if found is None else found
        if n not in self.inodes:
            return Err(E.ENOENT)
        if name == "read_inode":
            return self.attrs(n)
        if name == "contents":
            return self.inodes[n]["content"]
        if name == "read_symlink":
            return self.inodes[n]["target"]
        if n not in self.dirs:
            return Err(E.ENOTDIR)
        entries = self.dirs[n]
        if name == "read_directory":
            return entries[rest[0] - 1] if rest[0] <= len(entries) else None
        live = [e.ino for e in entries if e.name == rest[0] and not e.unlinked]
        return live[0] if live else Err(E.ENOENT)


# ---- the method under check -------------------------------------------------------------------------------------

class Served:
    """A method over one storage location: the object serving it now (a new one at each mount, as a new mount
    makes), and the persist points its objects have passed since their Init, for a crash at a point of the whole
    run (`crash_at`)."""

    def __init__(self, subject: StorageSubject, location: str, crash_at: int | None = None) -> None:
        self.subject, self.location, self.crash_at = subject, location, crash_at
        self.ops = subject.operations
        self.hooked = False
        self.method: object = None
        self.passed = 0
        self._start = 0

    @property
    def points(self) -> int:
        """Persist points passed, across every object so far."""
        return self.passed + (self._persists() - self._start)

    def _persists(self) -> int:
        return getattr(self.method, "persists", 0) if self.hooked else 0

    def call(self, name: str, *args: object) -> object:
        """An operation's result in the model's vocabulary: its value, Err(errno), or Raised."""
        try:
            value = model_value(getattr(self.method, name)(*args))
        except Crash:
            raise
        except OSError as e:
            return Err(e.errno)
        except Exception as e:
            return Raised(f"{type(e).__name__}: {e}")
        nothing = name in NOTHING and isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return None if nothing else value

    def ask(self, look: Look) -> object:
        if look[0] == "contents":
            return digest(self.call("read_file", look[1], 0, WHOLE))
        return self.call(*look)

    def mount(self, new: bool = True) -> object:
        """Init, on a new method over the storage (or the same one again); what Init returned."""
        self.passed = self.points  # what the object serving until now passed (none, at first)
        if new:
            self.method = self.subject.open(self.location)
            self.hooked = hasattr(self.method, "crash_at") and hasattr(self.method, "persists")
        done = self.call("init")
        self._start = self._persists()
        if self.hooked and self.crash_at is not None and self.crash_at > self.passed:
            self.method.crash_at = self._start + self.crash_at - self.passed
        return done

    def release(self) -> object:
        return self.call("release") if "release" in self.ops else None

    def do(self, name: str, *args: object) -> object:
        """One call of a step: an operation, or a lifecycle sequence's part ("new", "same": Init)."""
        if name in ("new", "same"):
            return self.mount(new=name == "new")
        return self.release() if name == "release" else self.call(name, *args)

    def abandon(self) -> None:
        """Let go of the method (a crash may have stopped it), persisting nothing more."""
        if self.hooked:
            self.method.crash_at = self._persists() + 1
        with contextlib.suppress(Exception):
            self.method.release()


# ---- lockstep ------------------------------------------------------------------------------------------------------

@dataclass
class Lockstep:
    """A method and the model, step by step. `inodes` are the numbers of the program's inodes (#0 the root)."""

    served: Served
    model: StorageModel
    coverage: Counter = field(default_factory=Counter)
    inodes: list[int] = field(default_factory=lambda: [ROOT_INO])
    steps: int = 0
    #: the method's calls of each step, as made: a crash run makes them again
    calls: list[list[tuple]] = field(default_factory=list)
    #: called between two calls of one step (a crash there leaves what the first did)
    between: Callable[[], None] = lambda: None

    @classmethod
    def start(cls, served: Served) -> Lockstep:
        """Init on freshly formatted storage: the model takes the root as the method has it (storage.init.root)."""
        done = served.mount()
        root = served.call("read_inode", ROOT_INO)
        if done is not None or not isinstance(root, Attrs):
            raise Mismatch(f"Init on freshly formatted storage: {shown(done)}; Read Inode of the root: {shown(root)} "
                           "(storage.init.root)")
        lock = cls(served, StorageModel.formatted(root))
        lock.coverage.update(lock.model.init().rules)
        lock.compare("after Init")
        return lock

    # ---- arguments --------------------------------------------------------------------------------------------

    def resolve(self, step: list) -> list:
        """The step with what it drew made the program's (`Pick` -> "#k", or a name)."""
        out = []
        for a in step:
            out.append(self._pick(a, out) if isinstance(a, Pick) else a)
        return out

    def _pick(self, p: Pick, before: list) -> str:
        """What `p` stands for now. The odd cases take the middle of its range (3 to 7), a name's edges the top of a
        new name's (8 to 11): Hypothesis draws the ends of a range often, and the low end should be the common case."""
        s = self.model.state
        if p.kind in NAME_PICKS:
            return self._name(p, s.dirs.get(self.number(before[1]), []), before)
        held = [k for k, n in enumerate(self.inodes) if n in s.inodes]
        if p.kind == "held":  # the root now and then: its inode is the one least like the others
            added = held[1:]
            return inode_ref(added[-1 - p.n % len(added)] if added and p.n != 4 else 0)
        if p.kind == "dir" and p.n != 4:  # entries meet most often in one directory: the root
            dirs = [k for k in held if self.inodes[k] in s.dirs]
            return inode_ref(dirs[p.n % len(dirs)] if p.n in (2, 5) else 0)
        fits = FITS.get(p.kind, lambda _: False)
        typed = [k for k in held if fits(s.inodes[self.inodes[k]])]
        if typed and p.n != 4:
            return inode_ref(typed[-1 - p.n % len(typed)])
        if p.n == 3:
            return STRANGER
        return inode_ref(len(self.inodes) - 1 - p.n % len(self.inodes))  # the latest first

    @staticmethod
    def _name(p: Pick, entries: list[Entry], before: list) -> str:
        """A name for a step in a directory of `entries`: "live" mostly one of its live names, now and then an
        unlinked one's (which Lookup must not find); "new" mostly a free name, now and then an unlinked one's (to be
        replaced), a live one (EEXIST), "." or a name at an edge of NAME_MAX (0, NAME_MAX-1, NAME_MAX, NAME_MAX+1
        bytes); "to", a rename's new name, as "new", or the old name itself, or another live one (replaced)."""
        live = sorted({e.name for e in entries if not e.unlinked})
        unlinked = sorted({e.name for e in entries if e.unlinked} - set(live))
        if p.kind == "live":
            if p.n == 6 and unlinked:
                return unlinked[0]
            return live[p.n % len(live)] if live and p.n != 4 else NAMES[p.n % len(NAMES)]
        if p.n in EDGE_NAMES:
            return EDGE_NAMES[p.n]
        if p.n == 3:
            return "."
        if p.kind == "to" and p.n == 7:
            return before[2]  # the old name: nothing changes
        others = [name for name in live if p.kind != "to" or name != before[2]]
        if others and (p.n == 5 or (p.kind == "to" and p.n == 2)):
            return others[p.n % len(others)]
        free = [name for name in NAMES if name not in live] or list(NAMES)
        return unlinked[p.n % len(unlinked)] if unlinked and p.n in (1, 6) else free[p.n % len(free)]

    def number(self, ref: str) -> int:
        k = slot(ref)
        return NEVER_HANDED_OUT if k is None or k >= len(self.inodes) else self.inodes[k]

    def _args(self, name: str, args: list) -> list:
        """The step's arguments as both sides take them."""
        out = [self.number(a) if isinstance(a, str) and a[:1] == "#" else a for a in args]
        if name == "add_inode":
            kind, uid, ref_name = args
            mode, nlink = KINDS[kind]
            out = [Attrs(mode, uid, uid, nlink=nlink, atime_ns=1, mtime_ns=1, ctime_ns=1, name=ref_name)]
        elif name == "update_inode":
            out[1] = CHANGES[args[1]](self.model.state.inodes.get(out[0], Attrs(stat.S_IFREG | 0o644)))
        elif name == "write_file":
            out[2] = out[2].encode()
        return out

    # ---- steps -----------------------------------------------------------------------------------------------------

    def step(self, step: list) -> object:
        """Run one resolved step on both; Mismatch when the method does what the contract does not allow."""
        self.steps += 1
        name, *args = step
        what = f"step {self.steps} {show(step)}"
        self.calls.append([])
        if name in LIFECYCLE:
            actual = self._lifecycle(name, what)
        elif name == EVICT:  # the core's put inode of an inode whose last name went: its nlink saved, then cleared
            self._operation("update_inode", [args[0], "unlink"], f"{what}: its update_inode")
            self.between()
            actual = self._operation("clear_inode", args, f"{what}: its clear_inode")
        else:
            actual = self._operation(name, args, what)
        if self.model.choices:
            self.settle(f"after {what}")
        elif not looks(step):
            self.compare(f"after {what}")
        return actual

    def _operation(self, name: str, args: list, what: str) -> object:
        call = self._args(name, args)
        given = tuple(inode(a) if isinstance(a, Attrs) else a for a in call)
        self.calls[-1].append((name, *given))
        actual = self.served.call(name, *given)
        if name in ("add_inode", "statfs"):  # the method's choice, which the model judges
            call.append(actual)
        outcome = getattr(self.model, name)(*call)
        self.coverage.update(outcome.rules)
        if actual != outcome.result:
            raise Mismatch(f"{what}: {difference(outcome.result, actual)} ({', '.join(outcome.rules)})")
        if name == "add_inode":
            self.inodes.append(actual)
        return actual

    def _lifecycle(self, name: str, what: str) -> None:
        """The core's sequences: each call on the method must succeed, and the model follows."""
        for i, call in enumerate(LIFECYCLE[name]):
            if i:
                self.between()
            self.calls[-1].append((call,))
            done = self.served.do(call)
            call = "init" if call in ("new", "same") else call
            self.coverage.update(getattr(self.model, call)().rules)
            if done is not None:
                raise Mismatch(f"{what}: {call} gave {shown(done)}")

    # ---- the storage whole -----------------------------------------------------------------------------------------

    def differences(self, model: StorageModel) -> list[str]:
        """How the method's storage differs from `model`'s."""
        ops = self.served.ops
        seen = Dumped.of(self.served.method)
        if seen is None:
            asked, looks_ = self.served.ask, looks_at(model, ops)
        else:
            asked, looks_ = seen.ask, looks_at(model, ops, set(seen.inodes), set(seen.dirs))
        out = []
        for look in looks_:
            outcome, actual = ask_model(model, look), asked(look)
            expected = outcome.result
            if model is self.model:  # the rules that decided what was compared (not those of a state passed over)
                self.coverage.update(outcome.rules)
            if expected != actual:
                named = list(look) if look[0] == "map_lookup" else [look[0], self.ref(look[1]), *look[2:]]
                out.append(f"{show(named)}: {difference(expected, actual)}")
        return out

    def ref(self, number: int) -> str | int:
        """How the program names inode `number`: the latest of its inodes with that number, or "#?" (or the number,
        when it names none)."""
        k = next((k for k in range(len(self.inodes) - 1, -1, -1) if self.inodes[k] == number), None)
        return inode_ref(k) if k is not None or number == NEVER_HANDED_OUT else number

    def compare(self, when: str) -> None:
        found = self.differences(self.model)
        if found:
            raise Mismatch(f"{when}: the storage differs from the model: " + "; ".join(found[:4]))

    def settle(self, when: str) -> None:
        """The method chose among the states the contract allows here: find which, and go on from it."""
        tried = []
        for i, (label, state) in enumerate(self.model.choices):
            found = self.differences(StorageModel(state.copy()))
            if not found:
                self.model.choose(i)
                return
            tried.append(f"{label}: " + "; ".join(found[:3]))
        raise Mismatch(f"{when}: the storage is in none of the states the contract allows:\n  " + "\n  ".join(tried))


# ---- running programs -------------------------------------------------------------------------------------------

@dataclass
class Run:
    """What running a program found: the steps as run (inodes resolved), what each returned, and the failure."""

    ops: list[list] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    failure: str | None = None
    coverage: Counter = field(default_factory=Counter)
    steps: int = 0

    def replay(self) -> Replay:
        return Replay(trace=self.trace, failure=self.failure, coverage=dict(self.coverage))


def fresh(subject: StorageSubject, scratch: Path) -> str:
    """Freshly formatted storage in `scratch` (emptied first): its location."""
    shutil.rmtree(scratch, ignore_errors=True)
    location = subject.location(scratch)
    subject.mkfs(location)
    return location


def run_contract(subject: StorageSubject, steps: list[list], scratch: Path,
                 then: Callable[[Lockstep], None] | None = None) -> Run:
    """The program in lockstep on fresh storage (`then`, given the lockstep at the end, may check more)."""
    out = Run()
    served = Served(subject, fresh(subject, scratch))
    lock = None
    try:
        lock = Lockstep.start(served)
        for step in steps:
            step = lock.resolve(step)
            out.ops.append(step)
            out.trace.append(f"{show(step)} -> {shown(lock.step(step))}")
        if then is not None:
            then(lock)
    except Mismatch as m:
        out.failure = str(m)
    finally:
        served.abandon()
    if lock is not None:
        out.coverage, out.steps = lock.coverage, lock.steps
    return out


def run_read_only(subject: StorageSubject, steps: list[list], scratch: Path) -> Run:
    """The program written by `dir:` in lockstep, then read back by the method, which has only the bare minimum."""

    def read_back(lock: Lockstep) -> None:
        lock.step(["remount"])
        reader = Served(subject, lock.served.location)
        done = reader.mount()
        if done is not None:
            raise Mismatch(f"{subject.method}: Init on what dir: wrote gave {shown(done)}")
        wrote = lock.served
        lock.served = reader
        try:
            lock.compare(f"{subject.method} reading what dir: wrote")
        finally:
            lock.served = wrote
            reader.abandon()

    return run_contract(DIR, steps, scratch, read_back)


def run_crash(subject: StorageSubject, steps: list[list], scratch: Path) -> Run:
    """The program run in lockstep, then crashed at each of its persist points (module docstring)."""
    start = fresh(subject, scratch / "start")
    work = subject.location(scratch / "work")
    out = Run()
    # the lockstep run: after each step, and between the calls of a step that makes several, the persist points
    # passed, the step, and the states a crash there may leave
    _copy(start, work)
    served = Served(subject, work)
    try:
        lock = Lockstep.start(served)
        marks, cuts, leaves = [served.points], [0], [lock.model.recoveries()]

        def mark() -> None:
            marks.append(served.points)
            cuts.append(lock.steps)
            leaves.append(lock.model.recoveries())

        lock.between = mark
        for step in steps:
            step = lock.resolve(step)
            out.ops.append(step)
            out.trace.append(f"{show(step)} -> {shown(lock.step(step))}")
            mark()
    except Mismatch as m:
        out.failure = str(m)
        return out
    finally:
        served.abandon()
    out.coverage, out.steps = lock.coverage, lock.steps
    out.coverage["storage.silent.crash-old-or-new"] += marks[-1] - marks[0]
    for k in range(marks[0] + 1, marks[-1] + 1):
        at = next(i for i in range(1, len(marks)) if marks[i] >= k)
        problem = _crash_at(subject, start, work, lock, k, leaves[at - 1] + leaves[at])
        if problem:
            cut = cuts[at]
            where = f"crash at persist point {k} of {marks[-1]}, in step {cut} {show(out.ops[cut - 1])}"
            out.failure = f"{where}: {problem}"
            break
    out.trace.append(f"{marks[-1] - marks[0]} persist points crashed at")
    return out


def _crash_at(subject: StorageSubject, start: str, work: str, run: Lockstep, k: int,
              allowed: list[tuple[str, State]]) -> str | None:
    """Make the calls of the lockstep `run` on a copy of `start` until the crash at point k; what a new method finds
    on the storage then must be one of the `allowed` states."""
    _copy(start, work)
    served = Served(subject, work, crash_at=k)
    try:
        served.mount()
        for step in run.calls:
            for call in step:
                served.do(*call)
    except Crash:
        pass
    else:
        return "no crash: the run passed fewer persist points than before"
    finally:
        served.abandon()
    after = Served(subject, work)
    try:
        done = after.mount()
        if done is not None:
            return f"Init after the crash gave {shown(done)}"
        lock = Lockstep(after, StorageModel(allowed[0][1]), inodes=run.inodes)
        lock.model.choices = allowed
        try:
            lock.settle("after the crash and a new Init")
        except Mismatch as m:
            return str(m).partition(": ")[2] or str(m)
    finally:
        after.abandon()
    return None


def _copy(src: str, dst: str) -> None:
    """The storage at `src`, as it is, at `dst` (a directory or one file)."""
    shutil.rmtree(dst, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        Path(dst).unlink()
    if Path(src).is_dir():
        shutil.copytree(src, dst, symlinks=True)
    else:
        shutil.copyfile(src, dst)


def which_check(ops: frozenset[str]) -> str:
    """The check a method's operations call for: the contract with all of ovlfs's requirements, or reading back
    with the bare minimum; ValueError when it has neither."""
    if not set(REQUIRED) - ops:
        return CONTRACT
    if not set(BARE_MINIMUM) - ops:
        return READ_ONLY
    raise ValueError(f"not a storage method: it lacks {', '.join(op for op in BARE_MINIMUM if op not in ops)}")


def run(program: StorageProgram, subject: StorageSubject, scratch: Path) -> Run:
    """Run a kept (or drawn) program as its check says."""
    runner = {CONTRACT: run_contract, CRASH: run_crash, READ_ONLY: run_read_only}[program.check]
    return runner(subject, program.ops, scratch)

