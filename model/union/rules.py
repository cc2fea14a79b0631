"""The rules of the union model, each with an id that outcomes and reports cite.

Texts quote the union mounts design (seed 003, docs/seeds.md) or, for `overlayfs` rules, what Linux overlayfs does
(docs/facts.md, overlayfs). A profile switches between rules; every difference between profiles is one of these.
"""

from vfslab.model.limits import MAXSYMLINKS, NAME_MAX, PATH_MAX, Limit

RULES: dict[str, str] = {
    # lookup
    "union.lookup.topmost-first": "Lookups start at the topmost read-write layer and travel down only if no "
    "blocking entry exists on the top layer.",
    "union.lookup.whiteout": "Whiteout: a directory entry in the top layer that prevents lookups from "
    "travelling down to the bottom layer.",
    "union.lookup.opaque": "Opaque flag: prevents lookups of entries in this directory from travelling down "
    "to the bottom layer.",
    "union.lookup.fallthru": "Fallthru: a directory entry which allows lookups to fall through to the "
    "bottom layer for that exact entry. Fallthrus override opaque flags.",
    "union.lookup.dir-hides-nondir": "A directory on a higher layer hides a non-directory of the same name "
    "below; only directories merge.",
    "union.lookup.redirect": "overlayfs: a directory carrying trusted.overlay.redirect continues its lower "
    "lookup at the redirect path.",
    "union.lookup.dir-copyup": "union mounts: every visible directory on the lower file system has a "
    "matching directory on the upper file system, created during pathname lookup.",
    # path resolution (POSIX)
    "union.path.enoent": "A missing component or a dangling symlink: ENOENT.",
    "union.path.enotdir": "A non-directory used as a directory: ENOTDIR.",
    "union.path.eloop": "More than 40 symlinks followed, or O_NOFOLLOW on a symlink: ELOOP.",
    "union.path.enametoolong": "A component over 255 bytes or a path of PATH_MAX or more: ENAMETOOLONG.",
    "union.path.search": "Each directory walked through needs search (x) permission: EACCES.",
    # permissions (POSIX, for a non-root caller)
    "union.perm.access": "Read, write or search permission missing for the caller: EACCES.",
    "union.perm.owner": "chmod, chown, and explicit utimes need the owner (or root): EPERM.",
    "union.perm.hardlink": "protected_hardlinks: a non-owner may link only a regular file it can read and "
    "write: EPERM.",
    "union.perm.sticky": "In a sticky directory only the directory's owner, the entry's owner or root may remove "
    "or replace an entry: EPERM.",
    # set-id bits (POSIX, as Linux keeps them)
    "union.mode.kill-setid": "A write, truncate or fallocate of a regular file by a caller without CAP_FSETID, and "
    "any chown of a non-directory, clears setuid, and setgid when group execute is set (or the caller is not in the "
    "group).",
    "union.mode.chmod-setgid": "chmod by a caller neither in the file's group nor root leaves setgid unset.",
    "union.mode.setgid-dir": "A new entry of a setgid directory takes the directory's group; a new directory also "
    "its setgid bit.",
    # copy-up
    "union.copyup.file": "File copyup: create a file on the top layer that has the same metadata and "
    "contents as the file with the same pathname on the bottom layer.",
    "union.copyup.open-write": "open(O_WRITE | O_RDWR | O_APPEND), truncate()/open(O_TRUNC) copy up.",
    "union.copyup.metadata": "chmod(), chown(), utimes(), setxattr() copy up (and so does setting or removing an "
    "ACL); a copy keeps the xattrs, ACLs among them.",
    "union.copyup.link": "link() /oldfile /newlink -> copies up /oldfile, creates /newlink on topmost layer.",
    "union.copyup.parents": "Parent directories are copied up (created on the top layer) before a child.",
    "union.copyup.dir": "A directory is copied up as an empty, non-opaque directory with the same metadata.",
    # creation and removal
    "union.create.topmost": "creat() /newfile -> creates on topmost layer.",
    "union.create.over-whiteout": "Creating a name replaces the top layer's whiteout for it.",
    "union.mkdir.opaque": "mkdir() /olddir after rmdir -> creates on topmost layer w/ opaque flag.",
    "union.mkdir.opaque-in-merged": "overlayfs with redirect_dir or index on: a new directory in a merged "
    "directory is created opaque (ovl_create_upper; an optimization kept off while offline changes are allowed).",
    "union.unlink.whiteout": "unlink() /oldfile -> creates a whiteout on topmost layer (when the name exists "
    "below).",
    "union.unlink.upper-only": "Removing a name that exists only on the topmost layer leaves no whiteout.",
    "union.rmdir.whiteout": "rmdir() /olddir -> creates a whiteout on topmost layer (when the name exists "
    "below).",
    "union.unlink.dir": "unlink of a directory: EISDIR.",
    "union.rmdir.dot": "rmdir of a path ending in `.`: EINVAL.",
    "union.rmdir.notempty": "rmdir of a directory whose merged listing is not empty: ENOTEMPTY.",
    # readdir
    "union.readdir.merge": "readdir merges the layers: upper entries first, whiteouts and duplicates "
    "removed, layers below an opaque directory left out.",
    "union.readdir.fallthru": "union mounts: readdir() copies up entries from the bottom layer as fallthrus "
    "and marks the directory opaque.",
    # rename
    "union.rename.file": "rename() /oldfile /newfile -> copies up /oldfile to /newfile on top layer, and "
    "creates a whiteout covering the source if it exists below.",
    "union.rename.dir-exdev": "rename() /olddir /newdir -> EXDEV (a directory present on a lower layer).",
    "union.rename.dir-redirect": "overlayfs redirect_dir=on: renaming a lower or merged directory copies it "
    "up, stores trusted.overlay.redirect and whites out the source.",
    "union.rename.upper-dir": "rename() /topmost_only_dir /topmost_only_dir2 -> success.",
    "union.rename.opaque-into-merged": "overlayfs: a top-layer-only directory moved into a merged directory "
    "is marked opaque.",
    "union.rename.same-inode": "rename of two names of one inode does nothing and succeeds.",
    "union.rename.same-inode-path-api": "A FUSE daemon serving paths (libfuse's high-level API) has a kernel "
    "inode per name, as a FUSE overlay has for each lower name of an indexed hard link (a request names an inode, "
    "and a change must copy up the name it came through): a rename of one such name of a file onto another is "
    "checked as any rename is (write and search permission on both parents) before the file system finds that it has "
    "nothing to do.",
    "union.rename.noreplace": "RENAME_NOREPLACE onto an existing name: EEXIST.",
    "union.rename.subtree": "Renaming a directory into its own subtree: EINVAL; onto its own ancestor: "
    "ENOTEMPTY.",
    "union.rename.types": "A directory onto a non-directory: ENOTDIR; a non-directory onto a directory: "
    "EISDIR; onto a non-empty directory: ENOTEMPTY (POSIX also allows EEXIST).",
    # links and link counts
    "union.link.dir": "link() of a directory: EPERM.",
    "union.link.exists": "link(), symlink(), mkdir() onto an existing name: EEXIST.",
    "union.link.fd": "flink (linkat of an fd's /proc/self/fd link, followed) names the file the fd refers to, checked "
    "as link() is; a lower file is copied up through the name it is shown by; a file with no name left: ENOENT "
    "(but an O_TMPFILE file's first).",
    "union.hardlink.broken": "When a file with multiple hard links is copied up, any other hard links "
    "pointing to the same inode remain unchanged (link count off by one).",
    "union.hardlink.index": "overlayfs index=on: lower hard links stay one file after copy-up of any name; "
    "nlink counts the union's names.",
    "union.nlink.merged-dir": "overlayfs reports nlink 1 for a merged directory.",
    "union.nlink.dir-subdirs": "A directory's nlink is 2 plus its visible subdirectories (the POSIX convention).",
    "union.nlink.dir-one": "Every directory reports nlink 1 (unionfs-fuse).",
    "union.nlink.own": "ovlfs: a file's link count is its storage inode's, which counts the union's names: an open "
    "lower file whose last name is removed reports 0, where overlayfs shows the lower inode's count.",
    # open files
    "union.fd.follows-copyup": "overlayfs: a read-only fd opened before copy-up sees later writes.",
    "union.fd.stale": "union mounts: existing open file descriptors continue to refer to the read-only copy "
    "on the bottom layer and will not see any changes that occur after the copy-up.",
    "union.fd.mode": "read on a write-only fd or write on a read-only fd: EBADF; ftruncate on a read-only "
    "fd: EINVAL; read of a directory: EISDIR.",
    "union.fd.path-api": "A FUSE daemon serving paths has a kernel inode per name, and an open file is its name's: "
    "once that name is removed (not renamed), fstat may say nlink 0 though other names of the file remain, and flink "
    "is ENOENT (the daemon has no path for it); fstat of a directory removed while open is ESTALE (the kernel asks a "
    "directory's attributes by its node id alone, which no longer has a path).",
    "union.fstat.removed-dir": "fstat of a directory removed while open (by rmdir, or a rename over it) shows its "
    "inode: nlink 0 on a plain file system; through overlayfs 1 for a merged directory, 0 for an upper one and the "
    "lower directory's own count for a lower one; 2 where directories count their subdirectories, 1 where all count "
    "1.",
    "union.fd.change": "fchmod, fchown, futimens, fsetxattr and fremovexattr change the file or directory an fd "
    "refers to, checked as the same change by name but with no lookup: through the name it still has (copied up as "
    "through that name), else the inode itself (union.fd.nameless).",
    "union.fd.nameless": "A change through an fd whose inode has no name left (unlinked, renamed over, removed while "
    "open) lands on the inode where it is an upper one (or an indexed file's index inode), and on a plain file "
    "system; overlayfs copies a lower one up under the name it had, where its whiteout or another file now stands: "
    "EEXIST for a file, ENOTDIR for a directory.",
    "union.fd.lseek": "lseek sets a file's offset from its start, the current offset or its end; an unknown "
    "whence or a negative result: EINVAL.",
    "union.fd.fallocate": "fallocate acts on the file an fd open for writing refers to (its copy-up): mode 0 "
    "allocates, making the file at least offset+length long; KEEP_SIZE leaves the size; PUNCH_HOLE|KEEP_SIZE zeroes "
    "the range within the size; ZERO_RANGE zeroes the range, growing the file unless KEEP_SIZE; COLLAPSE_RANGE "
    "removes the range, INSERT_RANGE inserts that many zero bytes at offset, moving the rest.",
    "union.fd.fallocate-args": "fallocate with offset < 0 or length <= 0: EINVAL; then PUNCH_HOLE without "
    "KEEP_SIZE, or COLLAPSE_RANGE or INSERT_RANGE with another flag: EOPNOTSUPP; both before the fd's mode (EBADF).",
    "union.fd.fallocate-range": "COLLAPSE_RANGE and INSERT_RANGE take an offset and length in whole blocks of the "
    "file system; a collapse must end before the end of the file, an insert start before it: else EINVAL.",
    "union.fd.fallocate-unsupported": "A kind of fallocate the file system does not do: EOPNOTSUPP (overlayfs passes "
    "the call to the upper layer's file system; FUSE passes on only allocation, KEEP_SIZE, punching holes and "
    "zeroing ranges; tmpfs neither zeroes nor collapses nor inserts ranges).",
    "union.open.flags": "O_CREAT|O_EXCL on an existing name: EEXIST; O_DIRECTORY on a non-directory: "
    "ENOTDIR; write-open of a directory: EISDIR.",
    "union.open.tmpfile": "O_TMPFILE opens a new regular file with no name in a directory, for writing (with "
    "O_RDONLY or O_CREAT: EINVAL; on a non-directory: ENOTDIR; write and search permission on the directory), made as "
    "any new file there is (the caller's, its mode by the umask or a default ACL), on the upper layer (the directory "
    "is copied up); flink gives it its first name, unless it was opened O_EXCL.",
    "union.open.tmpfile-unsupported": "A mount that makes no unnamed files (a FUSE daemon serving no tmpfile "
    "request, as on libfuse before 3.17): O_TMPFILE is EOPNOTSUPP, after the permission check.",
    # inode numbers
    "union.ino.origin": "overlayfs: a copied-up file keeps the st_ino of its lower origin (unless it broke "
    "a lower hard link); a merged directory reports its lower st_ino.",
    "union.ino.topmost": "union mounts: st_ino is that of the topmost copy.",
    "union.ino.renumbered": "overlayfs, layers on more than one file system: each layer's inodes are shown on an "
    "anonymous device of its own, allocated anew at every mount, so (st_dev, st_ino) identifies an inode within "
    "one mount only; identities start again at a remount or push (found by experiment).",
    "union.xattr.unsupported": "No xattrs at all (unionfs-fuse built without them): EOPNOTSUPP.",
    "union.readlink.notlink": "readlink of anything but a symlink: EINVAL.",
    # xattrs
    "union.xattr.user": "user.* xattrs: ENODATA when absent; EPERM on a symlink, and for any but the owner to "
    "change them on a sticky directory; set needs write "
    "permission, get read permission.",
    # POSIX ACLs
    "union.acl.check": "Another caller than the owner is checked against the file's access ACL, where its mode's "
    "group bits (the mask) are not 0: its named user entry, else the owning and named groups it is in (any that "
    "grants), else other; what the first two grant is limited by the mask.",
    "union.acl.set": "Setting an ACL: a value that is not an ACL: EINVAL; a default ACL on a non-directory: EACCES "
    "(removing one does nothing); not the owner or root: EPERM; entries out of order, repeated, or named ones without "
    "a mask: EINVAL. An access ACL sets the mode's permission bits from its owner, mask (else owning group) and other "
    "entries, clears setgid as chmod does, and is not kept where those bits say all of it.",
    "union.acl.get": "Reading an ACL needs no permission on the file; none kept: ENODATA.",
    "union.acl.chmod": "chmod rewrites the access ACL's owner, mask (else owning group) and other entries.",
    "union.acl.inherit": "A new entry of a directory with a default ACL takes its mode from that ACL masked by the "
    "mode asked for, the umask left out, and an access ACL where the mode does not say all of it; a new directory "
    "also takes the default ACL as its own.",
    "union.acl.lower": "overlayfs: an ACL change on a name with no upper copy asks the lower layer first: where its "
    "file system keeps no ACLs (a read-only image), EOPNOTSUPP; removing one the lower file does not have, ENODATA; "
    "either way nothing is copied up.",
    # file handles
    "union.handle.make": "name_to_handle_at of a name (a last symlink not followed, each directory on the way "
    "searched by the caller) gives a handle of its inode.",
    "union.handle.unsupported": "overlayfs without nfs_export=on makes no file handles: name_to_handle_at is "
    "EOPNOTSUPP, after the lookup (a FUSE mount's kernel client makes them of any inode, a plain file system too).",
    "union.handle.open": "open_by_handle_at opens the inode a handle holds wherever its names are now (renamed, copied "
    "up), as open() opens an existing name of it but with nothing on the way to it checked; an inode with no name "
    "left, through a file still open.",
    "union.handle.stale": "A handle of an inode with no name left and no open file: ESTALE. Where the kernel holds "
    "each name of a file as an inode of its own (served by path; a FUSE overlay's lower name of an indexed hard "
    "link), the handle holds that name's inode, which goes with the name.",
    "union.handle.perm": "open_by_handle_at needs CAP_DAC_READ_SEARCH: EPERM for any other caller.",
    "union.handle.remount": "A FUSE mount that does not export its inodes knows a handle by a node id of one "
    "mount: after a remount or push, ESTALE (but the root's, always node 1).",
    "union.handle.slot": "A handle the program never made: EBADF.",
    "union.handle.evicted": "A FUSE mount's kernel opens a handle only while it holds the handle's inode in "
    "memory, which it may drop whenever nothing holds it (a file open since the handle was made, or the root; a "
    "name may be dropped too), and makes anew for the next lookup: ESTALE, at any such time.",
    # bench operations
    "union.bench.remount": "Unmount and mount again on the same layers: the union reads the same.",
    "union.bench.push": "The upper layer becomes the topmost lower layer under a fresh upper: its whiteouts "
    "and opaque markers then act from below.",
}

#: the numbers in the rules above, whose edges the generator draws
LIMITS = (
    Limit("NAME_MAX", NAME_MAX, "union.path.enametoolong", "bytes in one path component"),
    Limit("PATH_MAX", PATH_MAX, "union.path.enametoolong", "bytes in a path, its terminating NUL included"),
    Limit("MAXSYMLINKS", MAXSYMLINKS, "union.path.eloop", "symlinks followed in one lookup"),
)
NAME_LIMIT, PATH_LIMIT, LINK_LIMIT = LIMITS

#: the rules about layers (whiteouts, copy-up, merges, redirects, fallthrus, identities across layers): the model
#: fires them over the one layer the posix family gives a plain file system, which shows none of them
LAYERED = frozenset(rule for rule in RULES if rule.startswith(("union.lookup.", "union.copyup.")) or rule in {
    "union.create.topmost", "union.create.over-whiteout", "union.mkdir.opaque", "union.mkdir.opaque-in-merged",
    "union.unlink.whiteout", "union.unlink.upper-only", "union.rmdir.whiteout", "union.readdir.merge",
    "union.readdir.fallthru", "union.rename.file", "union.rename.dir-exdev", "union.rename.dir-redirect",
    "union.rename.upper-dir", "union.rename.opaque-into-merged", "union.hardlink.broken", "union.hardlink.index",
    "union.nlink.merged-dir", "union.nlink.dir-one", "union.nlink.own", "union.fd.follows-copyup", "union.fd.stale",
    "union.ino.origin", "union.ino.topmost", "union.ino.renumbered", "union.acl.lower", "union.bench.push"})
#: what a plain file system held to a posix profile can show: no layers
POSIX_RULES = {rule: text for rule, text in RULES.items() if rule not in LAYERED}
