"""Shared test setup: the whole suite runs under gevent's monkey patching (see Makefile)."""
