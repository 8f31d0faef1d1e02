"""Where trials run: one trial's life (``trial``), local worker processes (``local``) and Ray Tune (``ray/``).
Both backends share ``trial`` and ``nas.study``; ``ray/`` never imports ``local``."""
