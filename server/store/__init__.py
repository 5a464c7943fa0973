"""The history store: SQLAlchemy 2 (asyncio) models and queries over SQLite or PostgreSQL.

The recorder is the only writer; the gateway, the HTTP API and analytics read.
"""
