"""Client frames as bytes (RFC 6455 5.2): header, a fresh masking key, the masked payload.

Sans-I/O and the same bytes websocket-client's ``ABNF.format`` writes for a frame it created,
at a fraction of its cost: one open, close and message each send a frame, so this runs per
connection (issue 16). Received frames are still checked by websocket-client's ABNF.
"""

from __future__ import annotations

import os
import sys

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_CONTROL = frozenset({OP_CLOSE, OP_PING, OP_PONG})
_OPCODES = frozenset({OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG})
_MAX_LEN = 1 << 63
_ORDER = sys.byteorder  # XOR is byte-wise: any order works if both ints use the same one
_POOL = 4096  # bytes of os.urandom drawn at once: one getrandom() per 1,024 masking keys, not one each


class _Entropy:
    """Bytes from os.urandom, drawn a page at a time (the keys stay as unpredictable as RFC 6455
    10.3 asks: each byte is used once)."""

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf, self._pos = b"", _POOL

    def take(self, n: int) -> bytes:
        pos = self._pos
        if pos + n > len(self._buf):
            self._buf, pos = os.urandom(max(_POOL, n)), 0
        self._pos = pos + n
        return self._buf[pos : pos + n]

    def reset(self) -> None:
        """Forget the pool (a forked child must not reuse its parent's bytes)."""
        self._buf, self._pos = b"", _POOL


_ENTROPY = _Entropy()
random_bytes = _ENTROPY.take  # one pool per process; greenlets never switch inside take()
os.register_at_fork(after_in_child=_ENTROPY.reset)  # Locust --processes forks its workers


def mask(key: bytes, payload: bytes) -> bytes:
    """``payload`` XOR the 4-byte ``key`` repeated (masking and unmasking are the same)."""
    n = len(payload)
    if not n:
        return b""
    keys = key * (n // 4 + 1)
    return (int.from_bytes(payload, _ORDER) ^ int.from_bytes(keys[:n], _ORDER)).to_bytes(n, _ORDER)


def encode(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False, key: bytes | None = None) -> bytes:
    """One masked client frame. ``key``: the masking key (default: 4 fresh random bytes, as RFC
    6455 10.3 asks). Raises ValueError for an unknown opcode, a control frame over 125 bytes or
    fragmented, or a payload too long for the length field."""
    if opcode not in _OPCODES:
        raise ValueError(f"invalid opcode {opcode!r}")
    n = len(payload)
    if opcode in _CONTROL and (n > 125 or not fin):
        raise ValueError("a control frame is whole and at most 125 bytes")
    if n >= _MAX_LEN:
        raise ValueError("data is too long")
    if key is None:
        key = random_bytes(4)
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    if n < 126:
        head = bytes((b0, 0x80 | n))
    elif n < 65536:
        head = bytes((b0, 0xFE)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, 0xFF)) + n.to_bytes(8, "big")
    return head + key + mask(key, payload)
