"""Migration scripts, oldest first by file name."""
