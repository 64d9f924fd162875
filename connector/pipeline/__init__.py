"""Moves inbox rows through the pipeline stages in the background."""
