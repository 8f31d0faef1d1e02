"""Study reports: plain data read from the storage (data, choices), plotly figures, one self-contained page.
Reads studies through ``nas.study``; never imports ``nas.execution`` or ``nas.cli``."""
