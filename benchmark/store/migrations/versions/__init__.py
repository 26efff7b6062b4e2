"""Revisions, oldest first: 0001 initial schema."""
