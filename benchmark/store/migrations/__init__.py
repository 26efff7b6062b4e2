"""Alembic migrations of the board database (a package so that installs carry them)."""
