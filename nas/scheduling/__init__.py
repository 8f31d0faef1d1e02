"""When to stop: the Pareto math and the rung rule, the only place either backend asks whether a trial goes on.
Imports ``nas.study`` (records, config) only."""
