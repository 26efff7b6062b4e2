"""The results store: SQLAlchemy models, migrations and the queries the board and CLI use."""
