"""The hub's store: SQLAlchemy 2 models, Alembic migrations, sessions and repositories."""
