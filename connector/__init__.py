"""The FreshBooks -> Slack pipeline: ingest, enrich, route, render, deliver."""
