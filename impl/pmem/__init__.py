"""pmem: a file system in an emulated persistent-memory pool, its syscall router, its FUSE front and tools."""
