"""Checking: the results vocabulary, the registry of families, the engine they share, and each family's checker."""
