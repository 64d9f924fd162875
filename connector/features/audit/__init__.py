"""Audit search and replay, with their Slack answers and their CLI."""
