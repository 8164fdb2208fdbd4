"""wsstorm: load-test and observability harness for WebSocket reconnect storms.

The load side: reconnect policies, the Locust WebSocket user, the event
recorder, the embedded target server, fault injection, scenarios and the CLI.
It never imports :mod:`analysis`.
"""

__version__ = "0.1.0"
