"""vfslab: a simulation and model-checking test bench for union, FUSE and user-space file systems."""

__version__ = "0.9.0"
