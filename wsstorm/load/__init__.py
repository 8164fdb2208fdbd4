"""The load side: Locust users that open, hold and reconnect WebSocket connections, and record every step.

Owns the Locust user and its options and hooks, the frame-level client connection (exact close
codes, failure classification) and the event recorder (one JSON Lines shard per process). May
import Locust, gevent, websocket-client, :mod:`wsstorm.policies`, :mod:`wsstorm.runfolder`, and
the target's control module to start the embedded target; never :mod:`wsstorm.analysis`.
"""
