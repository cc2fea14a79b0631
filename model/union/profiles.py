"""Profiles: the named sets of rules where real union file systems legitimately differ."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    #: rename of a lower or merged directory succeeds with a redirect instead of EXDEV
    redirect_dir: bool = False
    #: lower hard links stay one file after copy-up (overlayfs index=on)
    index: bool = False
    #: an fd opened before copy-up reads the copy (overlayfs) instead of the stale lower file
    fd_follows_copyup: bool = True
    #: st_ino of a copy-up is its origin's (overlayfs) instead of the topmost copy's
    ino_from_origin: bool = True
    #: a directory's nlink: "merged-one" (overlayfs: 1 when merged, else the real count), "subdirs" (2 + the
    #: visible subdirectories, as POSIX file systems count), "one" (always 1)
    dir_nlink: str = "merged-one"
    #: lookup creates an upper directory for every visible lower one (union mounts)
    dir_copyup_on_lookup: bool = False
    #: readdir copies lower entries up as fallthrus and marks the directory opaque (union mounts)
    readdir_fallthrus: bool = False

    #: what one real program is seen to do, or a plain file system, rather than a union design (scenarios'
    #: written expectations, which are about unions, leave it out)
    observed: bool = False
    #: user.* xattrs are supported (unionfs-fuse as Debian builds it has none: EOPNOTSUPP)
    user_xattrs: bool = True
    #: xattr prefixes and entry names a subject keeps on its upper layer for itself (on-disk checks under this
    #: profile ignore them)
    private_disk_xattrs: tuple[str, ...] = ()
    private_disk_names: tuple[str, ...] = ()
    #: every new directory is created opaque (fuse-overlayfs), not only where overlayfs's rule says
    opaque_new_dirs: bool = False
    #: a non-directory's link count is the union's own, not its lower inode's (ovlfs keeps one in its storage):
    #: an open lower file whose last name is removed reports 0
    own_nlink: bool = False
    #: served through libfuse's high-level (path) API, which makes every name a kernel inode of its own
    path_api: bool = False
    #: the kinds of fallocate the subject does (`FALLOC_KINDS`); None: what the file system under its upper layer
    #: does, as far as the mount passes it on (found by trying each kind there when it is mounted)
    fallocate: tuple[str, ...] | None = None

    #: a plain file system, not a union: nothing lies below the names it shows (the posix family)
    plain: bool = False
    #: name_to_handle_at makes file handles, on a mount that is not FUSE's (whose kernel client makes them of any
    #: inode): a plain file system does; overlayfs does only with nfs_export=on, which no profile here stands for
    handles: bool = False

    @property
    def lookups_write(self) -> bool:
        """Looking a name up, or listing a directory, writes to the upper layer (union mounts)."""
        return self.dir_copyup_on_lookup or self.readdir_fallthrus

    @property
    def offline_changes(self) -> bool:
        """overlayfs allows changes to the layers while unmounted unless redirect_dir or index is on."""
        return not (self.redirect_dir or self.index)


#: what tmpfs does of fallocate (shmem_fallocate): allocate and punch holes, nothing else
TMPFS_FALLOCATE = ("allocate", "punch-hole")

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "union-mounts",
            "The union mounts design of the seed: stale fds after copy-up, directory copy-up during lookup, "
            "fallthrus written by readdir.",
            fd_follows_copyup=False,
            ino_from_origin=False,
            dir_nlink="subdirs",
            dir_copyup_on_lookup=True,
            readdir_fallthrus=True,
        ),
        Profile("overlayfs", "Linux overlayfs defaults: redirect_dir=off, index=off, metacopy=off, xino=off."),
        Profile("overlayfs-redirect", "Linux overlayfs with redirect_dir=on.", redirect_dir=True),
        Profile("overlayfs-index", "Linux overlayfs with index=on.", index=True),
        Profile("overlayfs-redirect-index", "Linux overlayfs with redirect_dir=on and index=on (union-fuse's "
                "defaults).", redirect_dir=True, index=True),
        Profile("fuse-overlayfs", "overlayfs as fuse-overlayfs serves it: directories count their visible "
                "subdirectories in nlink; every new directory is opaque, with .wh..opq and .wh..wh..opq entries in "
                "it, and copy-ups carry a user.fuseoverlayfs.origin xattr, on disk (kernel overlayfs, mounting "
                "that layer, would show the xattr and a .wh..wh..opq file in every such directory).",
                dir_nlink="subdirs", private_disk_xattrs=("user.fuseoverlayfs.",),
                private_disk_names=(".wh..opq", ".wh..wh..opq"), opaque_new_dirs=True, observed=True),
        Profile("posix", "a plain POSIX file system holding the union's visible tree (tmpfs): every name is an "
                "upper one, directories count their subdirectories in nlink.",
                redirect_dir=True, index=True, dir_nlink="subdirs", fallocate=TMPFS_FALLOCATE, observed=True,
                plain=True, handles=True),
        Profile("posix-no-xattr", "posix, on a file system with no extended attributes (a pmem pool): ENOTSUP; "
                "served by path (pmem-fuse, on libfuse's high-level API: union.rename.same-inode-path-api).",
                redirect_dir=True, index=True, dir_nlink="subdirs", user_xattrs=False, fallocate=TMPFS_FALLOCATE,
                path_api=True, observed=True, plain=True, handles=True),
        Profile("ovlfs", "ovlfs (seed 002) over one base directory, every change kept by a storage method: no "
                "whiteouts (a removed name is an unlinked entry of the storage, which hides the base's); st_ino is the "
                "storage's inode number, mapped from the base inode, so the same across copy-up and remount and one "
                "for all names of a base hard link (index=on's rule), whose link count is the storage inode's "
                "(union.nlink.own); a directory with a base part is not renamed (EXDEV, redirect_dir=off's rule); "
                "directories count their subdirectories in nlink; no xattrs (a storage method keeps none: "
                "EOPNOTSUPP); served by path (union.rename.same-inode-path-api).", index=True, own_nlink=True,
                dir_nlink="subdirs", user_xattrs=False, path_api=True, fallocate=(), observed=True),
        Profile("unionfs-fuse", "overlayfs as unionfs-fuse serves it: st_ino is the topmost copy's (it changes on "
                "copy-up), every directory has nlink 1, no xattrs; directories are renamed (by copying them up).",
                ino_from_origin=False, dir_nlink="one", user_xattrs=False, redirect_dir=True, fallocate=(),
                observed=True),
    )
}


def get(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown union profile {name!r}; known: {', '.join(PROFILES)}") from None
