"""The gateway: the I/O around the fan-out core.

The Redis bus (``bus``, ``bus_cluster``) feeds the live path (``livepath``, ``holes``),
which asks the core what to send and hands it to the ``outbox``; websocket sessions
(``session``, ``server``) subscribe through catch-ups (``catchup``, history ``builds`` in
worker processes); HTTP routes (``http``, ``api``, ``origin``, ``auth``) and ``metrics``
share the port. ``server.cli.runner`` builds it and hands it its collaborators.
"""
