"""Abstract states compared, and results as they are compared and shown."""

from __future__ import annotations

from dataclasses import dataclass, field

from vfslab.model.acl import show_xattrs
from vfslab.model.outcome import Err
from vfslab.model.state import Entry, State


@dataclass
class Identity:
    """A bijection between model inode identities and the subject's inodes: by st_ino, or with `by_device` by
    (st_dev, st_ino), for layers on several file systems, whose inodes overlayfs shows on a device per layer (one
    file system's st_dev is the mount's, new at every mount, so st_ino alone is what persists)."""

    by_device: bool = False
    #: whether directories keep their numbers: overlayfs on layers on several file systems (xino off) gives a
    #: directory a number of its own each time its inode comes into memory, which holds only while it stays there
    dirs: bool = True
    fwd: dict[object, object] = field(default_factory=dict)
    back: dict[object, object] = field(default_factory=dict)

    def _key(self, real: object) -> object:
        return real[1] if isinstance(real, tuple) and not self.by_device else real

    def check(self, path: str, model_ino: object, real_ino: object, kind: str) -> str | None:
        if model_ino is None or real_ino is None or (kind == "dir" and not self.dirs):
            return None
        real_ino = self._key(real_ino)
        if self.fwd.get(model_ino, real_ino) != real_ino or self.back.get(real_ino, model_ino) != model_ino:
            return (f"{path}: st_ino does not follow the model's identity (model object {model_ino}; "
                    "a hard link broken or joined, or st_ino changed across copy-up/remount)")
        self.fwd[model_ino] = real_ino
        self.back[real_ino] = model_ino
        return None

    def forget_all_but(self, model_inos: set) -> None:
        """Objects the model no longer shows give their numbers back: a new inode may take one at once (ext4
        gives a freed number to the next inode it makes: an O_TMPFILE file closed at a push, then the new upper
        layer's root). A name the subject kept where the model removed it differs as a path."""
        for m in [m for m in self.fwd if m not in model_inos]:
            r = self.fwd.pop(m)
            if self.back.get(r) == m:
                del self.back[r]


FIELDS = ("kind", "mode", "uid", "gid", "nlink", "size", "digest", "target", "xattrs", "opaque", "redirect")


#: how a field's values are shown in a difference: modes in octal, ACLs in their text form
_SHOWN = {"mode": lambda m: repr(oct(m)), "xattrs": lambda x: f"({show_xattrs(x)})"}


def diff_states(expected: State, actual: State, identity: Identity | None) -> list[str]:
    out = []
    for path in sorted(expected.keys() | actual.keys()):
        e, a = expected.get(path), actual.get(path)
        if e is None:
            out.append(f"{path}: present on the subject ({a.kind}), absent in the model")
            continue
        if a is None:
            out.append(f"{path}: absent on the subject, the model has a {e.kind}")
            continue
        # a whiteout is only a kind: its mode, owner and link count are the file system's business
        fields = ("kind",) if e.kind == "whiteout" else FIELDS
        if e != a:
            for f in fields:
                ev, av = getattr(e, f), getattr(a, f)
                if ev != av:
                    shown = _SHOWN.get(f, repr)
                    out.append(f"{path}: {f} model={shown(ev)} subject={shown(av)}")
        if identity is not None and e.kind != "whiteout" and (msg := identity.check(path, e.ino, a.ino, e.kind)):
            out.append(msg)
    return out


def view(result: object) -> object:
    """What of a result is compared: stat results without the inode number (checked as an identity)."""
    if isinstance(result, Entry):
        return (result.kind, result.mode, result.uid, result.gid, result.nlink, result.size)
    return result


def show(result: object) -> str:
    if isinstance(result, Err):
        return repr(result)
    if isinstance(result, Entry):
        return f"{result.kind} mode={oct(result.mode)} uid={result.uid} gid={result.gid} nlink={result.nlink} " \
               f"size={result.size}"
    if isinstance(result, bytes) and len(result) > 40:
        return f"{result[:20]!r}...({len(result)} bytes)"
    return repr(result)
