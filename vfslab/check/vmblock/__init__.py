"""Checking a vmblock against `model/block`: programs of control-file, target-directory and tree operations,
with readlinks and notify reads waiting in the background, run in lockstep with the model."""
