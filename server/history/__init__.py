"""History: the SQL store and everything that reads or writes it.

``models`` and ``migrations`` (the schema), ``engine``, ``writer`` and the ``recorder``
(the only SQL writer: every symbol's Redis log copied exactly once), ``queries`` and
``log_reader`` (bounded reads), ``reads`` (backfill windows and resumes: SQL plus the
log's tail, one consistent snapshot), ``source`` (what the gateway asks of history),
``columns`` (the history frame's columnar data).
"""
