"""The rules of the routing model, each with an id that outcomes and reports cite.

Texts quote the pmemfile seed (seed 000, docs/seeds.md) or docs/facts.md, pmemfile 1-8, which were checked against
upstream's code; `pmem.path.*` rules are the kernel's path walk, which the router must reproduce to be transparent
(the seed: "a process should not behave differently whether some files are provided by pmemfile, or the kernel at
the same path"). What a call then does to the name it reached is the file system's own business, decided by the
union model held to a plain POSIX profile: those outcomes cite `union.*` rules too.

`pmem.pool.*` rules are the pool's own format (docs/pmem.md), which the routing model does not see: the pool's
checks (crash, orphans) measure what their programs do against them, so that each check reaches the numbers in
them (a directory's 16th entry, a file's first byte past a block).
"""

from vfslab.model.limits import MAXSYMLINKS, NAME_MAX, PATH_MAX, Limit

#: the pool's format, written here again on purpose (impl/pmem/pool.py and fs.py never import a model): a block's
#: bytes, a directory entry's bytes (so a block holds BLOCK // DIRENT of them), a file's direct blocks
BLOCK = 4096
DIRENT = 264
DIR_BLOCK = BLOCK // DIRENT
DIRECT = 24

RULES: dict[str, str] = {
    # the path walk
    "pmem.path.empty": "pmemfile: an empty path is ENOTDIR (upstream's choice).",
    "pmem.path.empty-posix": "The kernel: an empty path is ENOENT (POSIX).",
    "pmem.path.enametoolong": f"A path longer than PATH_MAX ({PATH_MAX}) bytes with its terminating NUL (so "
    f"{PATH_MAX} bytes or more without it), or a component longer than NAME_MAX ({NAME_MAX}): ENAMETOOLONG.",
    "pmem.path.walk": "Resolution walks one component at a time with lstat; a missing component is ENOENT, a "
    "non-directory used as a directory ENOTDIR.",
    "pmem.path.root-dotdot": "`..` at the kernel's root is the root.",
    "pmem.path.trailing-slash": "A trailing `/` asks for a directory: the last name is followed and must be one "
    "(ENOTDIR); a call that makes a name other than a directory refuses it (open O_CREAT: EISDIR; symlink, "
    "link: ENOENT, or EEXIST when the name exists; unlink: EISDIR for a directory, else ENOTDIR).",
    "pmem.path.dot-last": "A call that makes or removes a name, given `.`, `..` or `/` as the last component, "
    "gets the kernel's answer: mkdir, symlink, link EEXIST; unlink EISDIR; rmdir `.` EINVAL, `..` ENOTEMPTY, "
    "`/` EBUSY; rename EBUSY.",
    # entering and leaving pools
    "pmem.route.enter": "A kernel directory whose (st_dev, st_ino) equals a mount point's enters the pool and "
    "the rest of the path becomes `/...` inside it.",
    "pmem.route.dotdot": "`..` at the pool root leaves the pool (resolved against the mount point's parent in "
    "the kernel).",
    "pmem.route.mount-point": "A mount point names its pool's root; removing or renaming it is EBUSY.",
    # symlinks
    "pmem.symlink.follow": f"Symlinks are followed by the router itself, at most MAXSYMLINKS ({MAXSYMLINKS}) in "
    "one lookup (ELOOP beyond).",
    "pmem.symlink.absolute": "An absolute symlink target restarts at the kernel root, even for a link stored in a "
    "pool.",
    "pmem.symlink.last": "Calls that do not follow the last component: lstat, open with O_NOFOLLOW or "
    "O_CREAT|O_EXCL, unlink, mkdir, rmdir, rename (both paths), symlink's link path, link's paths, readlink. "
    "Calls that follow it: stat, open otherwise, chdir.",
    # across file systems
    "pmem.xdev": "A link or rename between two pools, or between a pool and the kernel: EXDEV.",
    # file descriptors
    "pmem.fd.lowest": "Each pool file is given a real kernel fd as placeholder, so fd numbers follow the "
    "kernel's lowest-free rule and never collide.",
    "pmem.fd.dup": "dup/dup2 share one open file (shared offset); dup2 onto an open fd closes it first; dup2 of "
    "an fd onto itself does nothing.",
    "pmem.fd.close": "Closing returns 0; the pool file closes with its last reference. A closed fd is EBADF.",
    "pmem.fd.dir-offset": "A directory's offsets are each file system's own (ext4 hashes, tmpfs counts): lseek "
    "on a directory is not compared.",
    # the working directory
    "pmem.cwd.virtual": "chdir into a pool changes a virtual cwd only; getcwd returns mount point + pool path.",
    "pmem.cwd.notdir": "chdir to a non-directory: ENOTDIR.",
    # the pool's format
    "pmem.pool.dir-block": f"A directory is a dense array of {DIRENT}-byte entries (`..` included), {DIR_BLOCK} to a "
    f"{BLOCK}-byte block and none across two: entry {DIR_BLOCK + 1} starts the next block, and removing the last "
    "entry of a block frees it (docs/pmem.md).",
    "pmem.pool.orphan": "An unlinked file still open (an orphan: nlink 0) keeps its inode and blocks until its last "
    "close frees them; a pool closed with orphans (a crash, a killed daemon or process) frees them at its next "
    "open (docs/pmem.md).",
    "pmem.pool.file-block": f"A file's bytes are in {BLOCK}-byte blocks, the first {DIRECT} mapped from its inode, "
    "the rest through one indirect block: a size past a block's end takes the next block (a hole until written), "
    "a truncate frees the blocks past the new end (docs/pmem.md).",
}

#: the numbers in the rules above, whose edges the generators draw
LIMITS = (
    Limit("NAME_MAX", NAME_MAX, "pmem.path.enametoolong", "bytes in one path component"),
    Limit("PATH_MAX", PATH_MAX, "pmem.path.enametoolong", "bytes in a path, its terminating NUL included"),
    Limit("MAXSYMLINKS", MAXSYMLINKS, "pmem.symlink.follow", "symlinks followed in one lookup"),
    Limit("DIR_BLOCK", DIR_BLOCK, "pmem.pool.dir-block", "entries in a directory (`..` included) its first block "
          "holds"),
    Limit("BLOCK", BLOCK, "pmem.pool.file-block", "bytes of a file its first block holds"),
    Limit("DIRECT", DIRECT * BLOCK, "pmem.pool.file-block", "bytes of a file its direct blocks hold"),
)
NAME_LIMIT, PATH_LIMIT, LINK_LIMIT, DIR_BLOCK_LIMIT, BLOCK_LIMIT, DIRECT_LIMIT = LIMITS
