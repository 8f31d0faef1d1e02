"""A study as stored: its YAML schema, storage (URLs, locks, stale sweeps), trial records, the plan every backend
shares (create/resume, budget, baseline-then-search) and plain summaries. Imports ``search_space``/``evaluators``
and ``nas.search``/``nas.scheduling`` only, never ``nas.execution`` or ``nas.cli``."""
