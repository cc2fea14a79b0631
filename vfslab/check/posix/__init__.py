"""Checking plain file systems: the union checker, one layer and no upper layer, held to the posix profiles."""
