"""Alembic's environment for careloom: migrations run on the connection store.schema passes in, inside its
transaction (all of a migration or none of it, on both SQLite and PostgreSQL)."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
