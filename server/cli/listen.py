"""The gateway's listening socket, bound before anything else starts.

After a crash every wall reconnects at once. Bound first (before the imports, the
database and Redis), the port queues their connections in the kernel while the process
starts, instead of refusing them: a refused client backs off (0.5 s, 1 s, 2 s, ... with
jitter) and comes back long after the server is ready.
"""

from __future__ import annotations

import socket

from server.settings import Settings


def early_listener(settings: Settings) -> socket.socket | None:
    """A socket listening on ``server.host:port`` (None for port 0: the caller binds later).

    An OSError (the port is taken, the host is not ours) is left to the caller, with the
    address in its message.
    """
    server = settings.server
    if server.port == 0:
        return None
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((server.host, server.port))
        sock.listen(server.listen_backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {server.host}:{server.port}: {exc.strerror}") from None
    return sock
