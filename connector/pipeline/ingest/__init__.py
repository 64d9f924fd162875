"""Ingest: verify, parse and store FreshBooks webhooks, then hand them to the pipeline."""
