"""Storage methods by name: `dir:PATH`, `file:PATH`, `pmem:POOL`, and a user's own, `python:MODULE:CLASS[:LOCATION]`.

`open_method(spec)` makes the method a `--storage` argument names (not yet initialised: its `init()` reads and
verifies the storage); `mkfs(spec)` prepares storage for it, as the seed advises: a separate program, so that
mounting the wrong device cannot destroy what is on it.
"""
