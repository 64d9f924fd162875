"""`fbslack demo`: the real app against a sandbox FreshBooks business and a local Slack stand-in."""
