"""Client frames (wsstorm.load.frames): the bytes websocket-client's ABNF writes, and what its parser reads back."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websocket import ABNF
from websocket._abnf import frame_buffer

from tests.strategies import examples
from wsstorm.load import frames

OPCODES = [frames.OP_CONT, frames.OP_TEXT, frames.OP_BINARY, frames.OP_CLOSE, frames.OP_PING, frames.OP_PONG]


def _reference(opcode: int, payload: bytes, fin: bool, rsv1: bool, key: bytes) -> bytes:
    f = ABNF(int(fin), int(rsv1), 0, 0, opcode, 1, payload)
    f.get_mask_key = lambda _n: key
    return f.format()


@settings(max_examples=examples(300))
@given(
    opcode=st.sampled_from(OPCODES),
    payload=st.one_of(st.binary(max_size=300), st.integers(65530, 70000).map(lambda n: bytes(range(256)) * (n // 256))),
    fin=st.booleans(),
    rsv1=st.booleans(),
    key=st.binary(min_size=4, max_size=4),
)
def test_frames_are_the_bytes_websocket_client_writes(opcode, payload, fin, rsv1, key):
    if opcode in (frames.OP_CLOSE, frames.OP_PING, frames.OP_PONG) and (len(payload) > 125 or not fin):
        with pytest.raises(ValueError):
            frames.encode(opcode, payload, fin=fin, rsv1=rsv1, key=key)
        return
    assert frames.encode(opcode, payload, fin=fin, rsv1=rsv1, key=key) == _reference(opcode, payload, fin, rsv1, key)


@settings(max_examples=examples(200))
@given(payload=st.binary(max_size=70000))
def test_a_parser_reads_the_payload_back(payload):
    data = frames.encode(frames.OP_BINARY, payload)
    pos = [0]

    def recv(n: int) -> bytes:
        out = data[pos[0] : pos[0] + n]
        pos[0] += len(out)
        return out

    frame = frame_buffer(recv, skip_utf8_validation=True).recv_frame()
    assert (frame.opcode, frame.fin, frame.data) == (frames.OP_BINARY, 1, payload)
    assert pos[0] == len(data)


def test_each_frame_gets_a_fresh_masking_key():
    keys = {frames.encode(frames.OP_TEXT, b"x")[2:6] for _ in range(64)}
    assert len(keys) > 60  # 4 random bytes each: a repeat in 64 is a 1-in-10^6 event


@pytest.mark.parametrize("opcode", [3, 7, 0xB, 0xF, -1, 16])
def test_unknown_opcodes_are_refused(opcode):
    with pytest.raises(ValueError):
        frames.encode(opcode, b"")


def test_mask_is_its_own_inverse():
    key = b"\x01\x80\xff\x10"
    for n in (0, 1, 3, 4, 5, 125, 1000):
        p = bytes(range(256)) * 4
        assert frames.mask(key, frames.mask(key, p[:n])) == p[:n]
        assert frames.mask(key, p[:n]) == ABNF.mask(key, p[:n])


def test_random_bytes_are_fresh_across_the_pool_and_a_fork():
    import os

    seen = {frames.random_bytes(16) for _ in range(600)}  # 9,600 bytes: the pool refills twice
    assert len(seen) == 600
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first bytes must not be the parent's next ones
        os.write(w, frames.random_bytes(16))
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(r, 16)
    assert child != frames.random_bytes(16)
