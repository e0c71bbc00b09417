"""The database schema: alembic migrations of plain SQL, the only place tables are defined."""
