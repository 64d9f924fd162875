"""Talking to FreshBooks: the API client and callback registration."""
