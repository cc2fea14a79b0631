"""Real implementations served through FUSE, and their tools. Never imports vfslab.model."""
