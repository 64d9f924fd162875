"""Fake Slack and FreshBooks servers on 127.0.0.1 (port 0), speaking the documented wire formats."""
