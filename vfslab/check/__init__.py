"""The checking engine: operations, initial trees, abstract state, stateful and program checks, results."""
