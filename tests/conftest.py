"""Shared test setup: the whole suite runs under gevent's monkey patching (see Makefile).

Hypothesis profiles: ``make test`` runs every property test at its full example count (the default
profile); ``make test-fast`` passes ``--hypothesis-profile=fast``, a quarter of the examples, for the
edit-test loop.
"""

from hypothesis import settings

FAST_SHARE = 4  # the fast profile runs one example in FAST_SHARE
settings.register_profile("fast", max_examples=settings.default.max_examples // FAST_SHARE)
