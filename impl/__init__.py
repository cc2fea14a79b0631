"""Real implementations served through FUSE, and their tools. Never imports vfslab.model."""

#: our file systems as `vfslab mount NAME` mounts them: NAME -> the entry point ("module:function")
MOUNTS = {"union": "vfslab.impl.union.main:main", "vmblock": "vfslab.impl.block.main:main",
          "pmem": "vfslab.impl.pmem.main:main", "ovlfs": "vfslab.impl.ovlfs.main:main"}
