"""One module per ``nas`` subcommand."""
