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
        key = os.urandom(4)
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    if n < 126:
        head = bytes((b0, 0x80 | n))
    elif n < 65536:
        head = bytes((b0, 0xFE)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, 0xFF)) + n.to_bytes(8, "big")
    return head + key + mask(key, payload)
