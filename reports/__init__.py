"""Study reports: plain data read from the storage (data, choices), plotly figures, one self-contained page."""
