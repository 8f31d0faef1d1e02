"""What to try next: the search-space presets, define-by-run genome sampling and sampler construction.
Imports ``search_space`` and ``nas.study.config``/``nas.errors`` only."""
