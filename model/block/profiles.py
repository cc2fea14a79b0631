"""Profiles: where a vmblock may legitimately differ from the seed's design, each difference a named rule."""

from __future__ import annotations

from dataclasses import dataclass

from vfslab.model.block.fs import Options


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    #: the `l` operation is accepted (else `vmblock.ctl.list.release`: EINVAL)
    list_op: bool = True
    #: /version exists (else `vmblock.version.absent`)
    version_file: bool = True
    #: the kernel may keep a /blockdir entry after its target went (`vmblock.cache.entry`)
    entry_cache: bool = False

    def options(self, target: str, unprivileged: bool = False) -> Options:
        return Options(target, unprivileged, self.list_op, self.version_file, self.entry_cache)


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("vmblock", "the seed's design: /version gives the protocol version and 'l' lists the blocks"),
    Profile("vmblock-upstream", "open-vm-tools' release build on libfuse's high-level API: no /version "
            "(vmblock.version.absent), no 'l' operation (vmblock.ctl.list.release), and entries the kernel keeps "
            "for a second after their target went (vmblock.cache.entry)", list_op=False, version_file=False,
            entry_cache=True),
)}
