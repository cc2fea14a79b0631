"""The engine: what every family's checker shares.

- `race`: profiles raced beside a subject (`Race`), the failures (`Mismatch`, `Hang`) and the one watchdog guard
  that turns a call that does not return into a `Hang`;
- `state`: comparing abstract states, and a result as it is compared and shown;
- `generated`: budgets, the tally of a generated check, running a Hypothesis state machine within its budget;
- `choices`: picks, a value built from entries of tables, each one choice of Hypothesis's with no span of its own
  (the one module that reaches into Hypothesis's internals);
- `kept`: saved programs (JSON for `vfslab replay`, regression scenarios) and what a replay found;
- `family`: what a family is, the job a runner hands it, and how a tally or a program run becomes a verdict.
"""
