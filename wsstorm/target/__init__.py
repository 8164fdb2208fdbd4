"""The embedded target: a real WebSocket server whose capacity a herd can break, and its fault tools.

Owns the supervisor (``wsstorm serve``, options in ``options``), the serving worker processes and
their per-attempt costs (``costs``: TLS from ``tls``, attempt and session CPU, the dependency
``store`` process), the shared settings checks (``settings``), the server metrics
(``server.jsonl``, Prometheus), the admin API and its one client, the fault proxy, and starting
all of these as child processes. Runs on asyncio + websockets; may import
:mod:`wsstorm.runfolder`, never the load side, Locust or analysis.
"""
