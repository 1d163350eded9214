"""Persistence: SQLAlchemy 2 models, queries and Alembic migrations.

The only package that imports ``sqlalchemy`` and ``alembic``. SQLite in the
data directory is the embedded default; PostgreSQL serves teams and several
server processes sharing one database. May import ``domain`` and nothing else
of Dockyard's; secrets arrive and leave through a ``domain.ports.Cipher``.
"""
