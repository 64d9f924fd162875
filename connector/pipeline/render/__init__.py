"""Render: typed FreshBooks objects in, Slack messages (Block Kit) out. Pure."""
