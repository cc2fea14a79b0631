"""The rules of the storage-method contract, each with an id that outcomes and reports cite.

Texts quote seed 002 (the ovlfs "Storage Method", docs/seeds.md; docs/facts.md, ovlfs storage 1-7), operation by
operation. Where the seed is silent, or says "TO BE DETERMINED", vfslab chose, and the choice is a rule of its own
under `storage.silent.*`, saying why (docs/storage.md, "Where the seed is silent").
"""

from vfslab.model.limits import NAME_MAX, Limit

RULES: dict[str, str] = {
    # Init, Sync, Release
    "storage.init.root": "Init \"must ensure that the root directory for the filesystem exists\": after Init, Read "
    "Inode of the root (inode 1) gives a directory.",
    "storage.init.reads": "Init \"must prepare to serve and add inodes to the filesystem ... retrieve information "
    "from physical storage\": after Init the method serves what its storage holds.",
    "storage.sync.persists": "Sync \"must update the physical storage for the filesystem\"; \"any physical storage "
    "information that would not be updated by the update inode operation, or any other operation, must be written "
    "by this operation\": after Sync, Release and Init every inode, entry, mapping and content is as it was.",
    "storage.release.frees": "Release: \"No other operations for this filesystem will be called after this one is "
    "called until the Init() operation is called again\": Init after Release serves the same storage again.",
    "storage.statfs": "Statfs \"should set the members of the given statfs structure to indicate the amount of free "
    "and used space and inodes\": a block size, and free space and inodes within the totals.",
    # inodes
    "storage.add_inode.unique": "Add Inode \"must allocate physical storage for a new inode and allocate a unique "
    "inode number (within the filesystem) for it\": the number is the method's to choose, and new.",
    "storage.add_inode.attributes": "Add Inode: \"Set the initial attributes for the inode, in the physical storage, "
    "to the appropriate values based on the reference inode given\"; \"so that the inode will remain in storage "
    "until it is at least read one time\": the reference's attributes and name, no mappings and no flags yet (Map "
    "Inode and Add Directory Entry make those).",
    "storage.read_inode.attributes": "Read Inode \"must set the inode's attributes, such as owner and mode\": those "
    "Add Inode or Update Inode last saved.",
    "storage.read_inode.number-stable": "Read Inode \"must NOT change the inode's number or device. NEVER NEVER "
    "NEVER.\": a number names the same inode for as long as the storage holds it, across mounts.",
    "storage.read_inode.mappings": "Read Inode \"must set the base and storage inode mappings in the inode's "
    "information structure\".",
    "storage.read_inode.name": "Read Inode \"must set the inode's reference name, if defined\" (\"the name that is "
    "used to create copies of regular files into the Storage Filesystem\").",
    "storage.update_inode.saves": "Update Inode \"must save the attributes of the inode to physical storage\", and "
    "\"must NOT unprepare the inode\": Read Inode gives them back, and the inode stays usable.",
    "storage.clear_inode.keeps": "Clear Inode: \"The physical storage space for the inode should only be released if "
    "the link count for the inode is zero\"; \"This operation is called for every inode just before it is removed "
    "from the inode cache, not only inodes that have a link count of zero\": an inode with links stays, and so does "
    "the root, which Init \"must ensure\" exists.",
    "storage.clear_inode.may-release": "Clear Inode \"can release the physical storage for the inode AS "
    "APPROPRIATE\" once its link count is zero: the inode then stays or goes, as the method decides.",
    "storage.clear_inode.mappings": "Clear Inode \"must remove all mappings for the inode IF AND ONLY IF the inode is "
    "removed from physical storage\".",
    # mappings
    "storage.map.both-ways": "Map Inode \"must remember the mapping from the ovlfs inode to the specified inode also "
    "(i.e. the mapping must be remembered in both directions)\": Map Lookup finds the ovlfs inode, Read Inode shows "
    "the mapping.",
    "storage.map.fs": "Map Inode \"must remember whether the mapping is for the base or storage filesystem\": a "
    "mapping of one is not found in the other.",
    "storage.map.persistent": "Map Inode \"must make certain that this mapping will be remembered for later "
    "mounts\": after Sync, Release and Init, Map Lookup finds what was mapped (counted at an Init that gives "
    "mappings back).",
    "storage.map_lookup.found": "Map Lookup \"must find the ovlfs inode that matches the device number and inode "
    "number of the given reference inode from the specified filesystem (base or storage)\".",
    "storage.map_lookup.enoent": "Map Lookup \"must return an error ( < 0 ) if the inode number is not updated\": a "
    "(device, inode) with no mapping is ENOENT (the seed's example errno).",
    # directories
    "storage.number_dirent.counts": "Number Dirent \"must return the number of directory entries in the directory "
    "whose inode is given\".",
    "storage.number_dirent.with-deleted": "Number Dirent \"must include or exclude the number of removed directory "
    "entries in the directory, as requested\".",
    "storage.readdir.positions": "Read Directory: \"all directory entries must be numbered sequentially so that no "
    "positions from 1 through n are missing\", and \"must only return a NULL directory entry pointer as the last "
    "entry in the directory\": positions 1..n are the entries, n+1 and after None.",
    "storage.readdir.positions-stable": "Read Directory: \"each position remains the same between calls\"; \"must "
    "return the directory entries in the same order and positions at least until the directory is modified\".",
    "storage.readdir.unlinked-flagged": "Read Directory \"must return unlinked directory entries with the directory "
    "entry flag, OVLFS_DIRENT_UNLINKED, set\".",
    "storage.lookup.found": "Lookup Directory Entry: \"Find the inode number of the ovlfs inode for the entry in the "
    "ovlfs directory and whose name matches the one specified\".",
    "storage.lookup.never-deleted": "Lookup Directory Entry \"must NEVER return deleted entries\": an unlinked or "
    "absent name is ENOENT.",
    "storage.add_dirent.found": "Add Directory Entry \"must add the entry, whose name and inode number are given, to "
    "the given directory so that it may be found later by the lookup operation\".",
    "storage.add_dirent.replaces-unlinked": "Add Directory Entry \"must make certain that the entry is not marked as "
    "deleted, and that it replaces any deleted entry with the same name\".",
    "storage.add_dirent.relink": "Add Directory Entry \"must set the inode's NO_BASE_REF flag, and the directory "
    "entry's RELINK flag when the new directory entry is replacing an unlinked entry\".",
    "storage.rename.same-dir": "Rename Directory Entry: \"Change the name of the specified entry in the ovlfs "
    "directory ... This operation will ONLY be used if the source and target are both in the SAME directory\".",
    "storage.rename.old-name-unlinked": "Rename Directory Entry \"must track the old name as an unlinked directory "
    "entry\".",
    "storage.rename.replaces-unlinked": "Rename Directory Entry \"must replace any unlinked entry whose name matches "
    "the new name with the entry. The resulting entry must remain marked the same way the original was\".",
    "storage.rename.same-name": "Rename Directory Entry \"does not need to check the old name and new name to make "
    "sure they are different\": renaming a name to itself changes nothing.",
    "storage.unlink.tracked": "Unlink Directory Entry \"must mark the entry, whose name is specified, as removed\"; "
    "\"this operation is responsible for keeping track of deleted entries so that they will not reappear the next "
    "time the filesystem is mounted\".",
    # where the seed is silent: vfslab's choices
    "storage.silent.enoent": "vfslab's choice (the seed's example errno): an operation on an inode number the storage "
    "does not hold, a lookup, rename or unlink of a name the directory has not (or has unlinked): ENOENT.",
    "storage.silent.enotdir": "vfslab's choice: a directory operation on an inode that is not a directory: ENOTDIR.",
    "storage.silent.numbers-not-reused": "vfslab's choice: a number once handed out is never handed out again, even "
    "after its inode left storage, since unlinked entries go on naming it.",
    "storage.silent.positions-kept": "vfslab's choice (the seed allows renumbering once the directory is modified, "
    "yet keeps unlinked entries so that positions need not move): an entry keeps its position for its life; a new "
    "one goes at n+1 or takes the place of the unlinked entry it replaces.",
    "storage.silent.add-over-live": "vfslab's choice: adding a name the directory holds, not unlinked: EEXIST.",
    "storage.silent.rename-over-live": "vfslab's choice (rename(2)'s): renaming onto a name the directory holds, not "
    "unlinked, replaces that entry in its place, as an unlinked one is replaced.",
    "storage.silent.update-attributes": "vfslab's choice: Update Inode saves the attributes (mode, owner, size, link "
    "count, times, rdev) and the reference name; the mappings and flags it is handed are not its to change (Map "
    "Inode's and the directory operations'), nor is the file type (EINVAL); a smaller size cuts a file's contents.",
    "storage.silent.position-from-one": "vfslab's choice (\"the position always starts at one\"): Read Directory at "
    "position 0: EINVAL.",
    "storage.silent.names": "vfslab's choice (a name is one path component): an entry named \"\", \".\", \"..\", or "
    "with \"/\" or NUL in it: EINVAL; longer than 255 bytes: ENAMETOOLONG.",
    "storage.silent.unlink-keeps-flags": "vfslab's choice: an unlinked entry keeps its inode number and its other "
    "flags; only OVLFS_DIRENT_UNLINKED is added.",
    "storage.silent.remap": "vfslab's choice (\"a complete mapping includes a source device number and inode number "
    "as well as the target (ovlfs) inode number, and nothing else\"): an inode has at most one mapping per file "
    "system; mapping it again replaces the old one, and a (device, inode) mapped again moves to the new inode.",
    "storage.silent.unsynced-release": "vfslab's choice (ovlfs syncs before it releases, so the seed need not say): "
    "Release with no Sync before it, then Init, gives back the tables (inodes, entries, mappings, symlink targets) as "
    "the last Sync left them or as they are, and the files' contents as the last Sync left them or as last written "
    "(a medium that journals metadata, not data), each read through the sizes the tables give; never a mix within "
    "the tables or within the contents.",
    "storage.silent.crash-old-or-new": "vfslab's choice: a crash (at any persist point of a method that has them), "
    "then Init on the same storage, gives back what a Release with no Sync would have, before or after the "
    "operation the crash cut short.",
    "storage.silent.file-data": "vfslab's choice (Read and Write File are \"TO BE DETERMINED\"): pread(2) and "
    "pwrite(2) on a file as long as the inode's size: Read File returns what lies between the offset and the size "
    "(zeros where nothing was written), Write File writes at the offset, returns the count, and past the end grows "
    "the size; another type: EISDIR for a directory, EINVAL otherwise.",
    "storage.silent.symlink": "vfslab's choice (Set and Read Symlink are \"TO BE DETERMINED\"): a symbolic link's "
    "target is a string Set Symlink stores (the inode's size becoming its length) and Read Symlink returns, empty "
    "before the first Set; another type: EINVAL.",
    "storage.silent.content-persists": "vfslab's choice: file contents and symlink targets kept by the method persist "
    "as inodes do (Sync).",
}

#: the numbers in the rules above, whose edges the generator draws
LIMITS = (
    Limit("NAME_MAX", NAME_MAX, "storage.silent.names", "bytes of a directory entry's name (Add and Rename "
          "Directory Entry)", zero=True),
)
NAME_LIMIT, = LIMITS
