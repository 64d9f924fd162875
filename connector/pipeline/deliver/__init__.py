"""Deliver: post rendered messages to Slack, paced, retried, reconciled, never twice."""
