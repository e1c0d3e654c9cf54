"""Alembic environment and revisions for pgsched's schema, shipped inside the package."""
