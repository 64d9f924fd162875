"""Persistence: SQLAlchemy models, the session factory, encryption at rest and migrations."""
