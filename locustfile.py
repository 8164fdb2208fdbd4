"""The Locust entry: ``locust -f locustfile.py`` runs wsstorm's WebSocket user (web UI included).

Options (``--policy``, ``--message-rate``, ``--ping-interval``, ``--pong-timeout``, ``--seed``,
``--run-dir`` ...) are Locust options; with no ``--host`` the embedded target is started.
"""

import locust  # noqa: F401  (first: gevent's monkey patching before websocket/ssl/requests)

from wsstorm.load.user import WebSocketUser

__all__ = ["WebSocketUser"]
