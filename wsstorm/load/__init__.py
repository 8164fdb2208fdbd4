"""The load side: Locust users that open, hold and reconnect WebSocket connections, and record every step.

Modules: ``user`` (the Locust user), ``options`` (its Locust options and their checks),
``session`` (run-level hooks, embedded target, master/worker messages, manifest), ``connection``
(the frame-level client), ``handshake`` (request/response rules, TLS contexts, deflate),
``classify`` (exact close codes, failure kinds), ``template`` (per-connection headers and
query), ``recorder`` (one JSON Lines shard per process), ``sockets`` (scale helpers), and the
live view (``livestats``, ``webui``). May import Locust, gevent, websocket-client,
:mod:`wsstorm.policies`, :mod:`wsstorm.runfolder`, and the target's control module to start the
embedded target; never :mod:`wsstorm.analysis`.
"""
