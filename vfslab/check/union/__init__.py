"""Checking union mounts (and plain file systems) against `model/union`: generated and explicit programs run on a
mounted subject in lockstep with the model, the whole state compared as they go."""
