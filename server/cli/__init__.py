"""The command line and the composition of the running parts.

``main`` (the ``signalpush`` commands), ``runner`` (the one composition root: it builds the
gateway, the recorder and the history store and hands each its collaborators),
``supervisor`` (worker processes), ``embedded`` (the embedded redis-server), ``db``,
``importer``, ``stats``, ``demo``, ``acl``: one module per command family.
"""
