"""Executable reference models: pure Python, deterministic, standard library only."""
