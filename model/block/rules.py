"""The rules of the vmblock model, each with an id that outcomes and reports cite.

Texts quote the vmblock-fuse design (seed 001, docs/seeds.md) or what upstream open-vm-tools does (docs/facts.md,
vmblock 1-16).
"""


from vfslab.model.limits import PATH_MAX, Least, Limit

RULES: dict[str, str] = {
    "vmblock.tree": "The mount point contains /blockdir/, /dev, /notifydir/ (and /version, proposed in the "
    "seed); anything else: ENOENT.",
    "vmblock.getattr.special": "/, /blockdir and /notifydir are directories 0555 with nlink 3; /dev is a "
    "regular file 0600 owned by root.",
    "vmblock.getattr.link": "/blockdir/x is a symlink 0777 whose size is the length of <target>/x, present only "
    "if lstat of <target>/x succeeds (else that errno).",
    "vmblock.getattr.notify": "/notifydir/x is a regular file 0444.",
    "vmblock.readdir": "readdir of / lists dev, blockdir and notifydir; of /blockdir and /notifydir, the target "
    "directory; readdir never blocks.",
    "vmblock.readlink.target": "readlink of /blockdir/x returns the absolute path <target>/x once no block is on "
    "it.",
    "vmblock.readlink.missing": "readlink lstats the target first: a missing target fails at once (no "
    "blocking).",
    "vmblock.readlink.blocks": "When an entry in /blockdir/ is blocked, any readlink() on that entry will block.",
    "vmblock.ctl.handle": "Each open of /dev is a separate blocker: its file handle is the blocker's id.",
    "vmblock.ctl.read": "Reading /dev returns a fixed banner (upstream's VMBLOCK_FUSE_READ_RESPONSE, 18 bytes with "
    "its NUL); a read asking for fewer bytes than that: EINVAL.",
    "vmblock.ctl.format": "A write is one operation character then the path; count is the length of both; "
    "the offset is ignored; success returns the count.",
    "vmblock.ctl.normalise": "Repeated '/' are collapsed and one trailing '/' is stripped, so that the same "
    "file is one block.",
    "vmblock.ctl.toolong": "A write of more than PATH_MAX (4096) bytes, the operation character and the path "
    "together (before repeated '/' are collapsed): ENAMETOOLONG, and nothing is done.",
    "vmblock.ctl.op": "Operations: 'a' add block, 'd' delete block, 'l' list blocks; any other: EINVAL.",
    "vmblock.ctl.add.exists": "Adding a block on a path that is blocked already (by any blocker, even the same "
    "handle): EEXIST.",
    "vmblock.ctl.delete.owner": "A block is deleted only by the same path and the same handle; else ENOENT.",
    "vmblock.release": "Closing a /dev handle removes all blocks of that handle, and only those.",
    "vmblock.ctl.shared": "A handle is the open file, not a descriptor: descriptors duplicated from one (dup, or "
    "inherited across fork) are the same blocker, and its blocks go only when the last of them is closed (FUSE's "
    "release).",
    "vmblock.wake": "Removing a block wakes every waiter on it.",
    "vmblock.notify.missing": "Reading /notifydir/x when <target>/x is missing: EINVAL.",
    "vmblock.notify.unblocked": "Reading /notifydir/x when x is not blocked: ENOENT.",
    "vmblock.notify.waits": "Reading /notifydir/x waits until someone readlinks /blockdir/x or the block is "
    "removed.",
    "vmblock.notify.accessed": "The notification is sticky (a completion, completed for all): once a readlink has "
    "waited on the block, reading /notifydir/x returns at once until the block goes.",
    "vmblock.version": "/version is a read-only file (0444) giving the control protocol's version.",
    "vmblock.version.absent": "Upstream has no /version (the seed proposes it): ENOENT, and readdir of / leaves it "
    "out.",
    "vmblock.ctl.list.release": "Upstream compiles the 'l' operation into developer builds only: in a release "
    "build it is an unknown operation, EINVAL.",
    "vmblock.cache.entry": "libfuse's high-level API lets the kernel keep an entry for a second: after <target>/x "
    "goes, /blockdir/x may still be seen for that long (once it was looked up).",
    "vmblock.target": "The target directory is an ordinary directory, whose entries come and go under vmblock.",
    "vmblock.perm.root": "The control file is owned and only writable by root: a non-root open for writing is "
    "EACCES.",
    "vmblock.perm.per-user": "Unprivileged mode: any user may add blocks, but a user's blocks apply to that "
    "user's accesses only.",
}


#: what a read of /dev returns (upstream's VMBLOCK_FUSE_READ_RESPONSE, with its NUL)
BANNER = b"I am VMBLOCK-FUSE\0"

#: the numbers in the rules above, whose edges the generator draws
LIMITS = (
    Limit("PATH_MAX", PATH_MAX, "vmblock.ctl.toolong", "bytes of one write to /dev: the operation character and "
          "the path, as written"),
    Least("BANNER", len(BANNER), "vmblock.ctl.read", "bytes a read of /dev asks for: at least the banner's"),
)
PATH_LIMIT, BANNER_LIMIT = LIMITS
