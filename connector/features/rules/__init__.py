"""Routing rules: the service, the `/freshbooks route` syntax, the preview and the rule modal."""
