"""Render: typed FreshBooks objects in, Slack messages (Block Kit) out. Pure.

`formatting` (limits, escaping, money, dates, links), `descriptions` (what a message says about
each kind of object), `messages` (one renderer per event, the shared layout), `cards` (thread cards).
"""
