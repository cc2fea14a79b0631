"""Checking the pmem pool and its router: crash consistency, corrupt pools, transparency."""
