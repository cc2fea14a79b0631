"""union-fuse: a FUSE union file system in kernel overlayfs's on-disk format.

`options` reads the mount options, `disk` reaches the layers without following symlinks, `union` is
overlayfs's semantics over them, `serve` puts it behind FUSE, `main` is the `vfslab-union` program.
"""
