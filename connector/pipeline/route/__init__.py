"""Route: recorded events to deliveries, one per channel the workspace's rules name."""
