"""vmblock-fuse: our vmblock file system (seed 001), with the upstream design and one that cannot deadlock."""
