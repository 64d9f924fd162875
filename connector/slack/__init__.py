"""Outbound Slack helpers below the features: telling people about their setup, and bot tokens."""
