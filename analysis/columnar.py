"""Columnar (pyarrow) reading of events shards: the fast path of :mod:`wsstorm.analysis.load`.

It only takes a shard it can prove the tolerant reader (``wsstorm.runfolder.jsonl.read_jsonl``) would
read the same way: every line an object that orjson accepts.  Anything else (garbage, non-object or
empty lines, NaN/Infinity literals, bad UTF-8, very deep nesting, two objects on a line, a type
pyarrow will not convert) sends the whole shard to the tolerant path, so the warnings and skipped
lines stay exactly those of the tolerant reader.  A last line without its newline (the writer was
interrupted) is handed to the tolerant reader alone.

A shard is read in blocks of whole lines, each checked and parsed on its own by one of two threads
(pyarrow's parser runs without the GIL): both cores parse even a single shard, the bytes of a block
are freed once it is parsed (the shard is never all in memory), and the frame of a group of blocks is built
while the next blocks are parsed.
"""

from __future__ import annotations

import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pandas is imported by the caller's frames, not for parsing (which starts first)
    import pandas as pd

try:
    import pyarrow as pa
    import pyarrow.json as pj

    # The system allocator hands freed buffers back at once; mimalloc kept ~90 MiB of parser scratch
    # and pandas' arrow-backed text around, which showed as peak RSS (issue 16: <= 500 MiB).
    pa.set_memory_pool(pa.system_memory_pool())
except ImportError:  # pragma: no cover - without pyarrow every shard takes the tolerant path
    pa = None

_trim: Any = None
try:  # glibc's malloc_trim: the parser threads' arenas keep freed blocks, which would count as peak RSS
    import ctypes

    _trim = ctypes.CDLL("libc.so.6").malloc_trim
except (ImportError, OSError, AttributeError):  # pragma: no cover - another libc: nothing to hand back
    pass


def release_memory() -> None:
    """Hand the free pages of the C heap back to the OS (a few ms): the parsers' buffers are freed by
    then, yet glibc keeps them in its arenas (~100 MiB of RSS at a million events)."""
    if _trim is not None:
        _trim(0)


MAX_OPENERS = 1000  # orjson refuses nesting deeper than 1024; pyarrow does not: such lines go tolerant
BLOCK = 4 << 20  # bytes per parsed block (whole lines): 4 MiB measured fastest here (2 and 8-16 slower)
THREADS = 2  # parser threads: the machine's two cores
IN_FLIGHT = 6  # blocks read ahead of the parsers: bounds the raw bytes held at once (~24 MiB)
# Blocks per frame: a shard's frames are built while its later blocks are parsed, so after the last block
# only a group's frame is left to build, not the last shard's whole frame (~0.1 s alone at a million events)
GROUP = 8


def _plausible(data: bytes) -> int:
    """Cheap byte-level checks that, together with pyarrow accepting ``data`` (whole lines, each ending
    in a newline) with one row per line, prove the tolerant reader would read every line as one object.
    Returns the number of lines, or 0 when a check fails."""
    # Every line ends with '}' (so none is empty, whitespace-only or a bare null/number/array, which
    # pyarrow would skip or take as a row) and the block starts with '{' (not a BOM, which pyarrow skips
    # at the start of what it parses, nor whitespace); newlines found once, in numpy.
    arr = np.frombuffer(data, dtype=np.uint8)
    nl = np.flatnonzero(arr == 10)
    n = len(nl)
    if not n or data[:1] != b"{" or nl[-1] != len(arr) - 1 or not (arr[nl - 1] == 125).all():
        return 0
    # pyarrow accepts NaN/Infinity literals, orjson does not (a one-byte scan first: most logs hold no N/I)
    if (b"N" in data and b"NaN" in data) or (b"I" in data and b"Inf" in data):
        return 0
    if not data.isascii():
        try:  # pyarrow does not check the UTF-8 of fields it ignores; orjson checks every string
            data.decode("utf-8")
        except UnicodeDecodeError:
            return 0
    openers = data.count(b"{") + (data.count(b"[") if b"[" in data else 0)
    if openers - n >= MAX_OPENERS:
        pos = np.flatnonzero((arr == ord("[")) | (arr == ord("{")))
        line = np.searchsorted(nl, pos)
        if np.bincount(line).max() >= MAX_OPENERS:
            return 0
    return n


MIXED = ("after_code",)  # fields that are an int or a text (a close code or a fail kind)
TEXT = "#text"  # suffix of the renamed text-valued copy of a MIXED key


def _split_mixed(data: bytes) -> bytes | None:
    """``data`` with each text-valued MIXED key renamed ``<key>#text``, so pyarrow reads the ints and
    the texts as two typed columns; None when the data already holds such a name.

    A key's quotes cannot be inside a JSON string (a quote there is escaped), so the replaced bytes
    are always keys; other spellings (spacing, escapes) reach pyarrow as text in an int column,
    which it rejects: then the tolerant path reads the shard."""
    for f in MIXED:
        if (f + TEXT).encode() in data:
            return None
        for sep in (b": ", b":"):
            # (replace returns the same bytes, uncopied, when the key is not there)
            data = data.replace(b'"' + f.encode() + b'"' + sep + b'"', b'"' + (f + TEXT).encode() + b'"' + sep + b'"')
    return data


@dataclass(frozen=True)
class Spec:
    """What to read from each line: the float columns and the text columns (by name)."""

    floats: tuple[str, ...]
    strings: tuple[str, ...]

    def schema(self) -> Any:
        fields = [(f, pa.float64()) for f in self.floats] + [(f, pa.string()) for f in self.strings]
        fields += [(f, pa.int64()) for f in MIXED] + [(f + TEXT, pa.string()) for f in MIXED]
        return pa.schema(fields)


def spec_of(by_event: dict[str, dict[str, str]], float_cols: list[str]) -> Spec:
    """The columns the events frame needs: ``float_cols``, the common text ones and each event's
    categorical ("c") and object ("o") fields (the MIXED ones are read as an int and a text column)."""
    per_field = {f: k for fields in by_event.values() for f, k in fields.items()}
    strings = ["user", "event", *(f for f, k in per_field.items() if k in ("c", "o") and f not in MIXED)]
    return Spec(tuple(float_cols), tuple(strings))


def _block_table(data: bytes, spec: Spec) -> Any:
    """One block's columns as a pyarrow Table; None when a check fails or pyarrow rejects the data (or
    reads another number of rows than there are lines: two objects on one line)."""
    n_lines = _plausible(data)
    if not n_lines:
        return None
    split = _split_mixed(data)
    del data
    if split is None:
        return None
    opts = pj.ParseOptions(explicit_schema=spec.schema(), unexpected_field_behavior="ignore")
    try:
        # one pyarrow block per call (block_size > BLOCK), no pyarrow threads: the blocks run side by side
        tb = pj.read_json(
            pa.BufferReader(split),
            read_options=pj.ReadOptions(block_size=2 * len(split) + 1024, use_threads=False),
            parse_options=opts,
        )
    except (pa.ArrowInvalid, UnicodeDecodeError, ValueError):
        return None
    return tb if tb.num_rows == n_lines else None


def _blocks(path: Path) -> Iterator[bytes | tuple[bytes, bool]]:
    """The shard's bytes as blocks of whole lines (about BLOCK each), then (rest, clean): the bytes after
    the last newline and whether the columnar path may take the shard (False: it has no newline at all,
    or ends in a whitespace-only line, which alone would parse as nothing, yet after the others is a bad
    line)."""
    carry = b""
    seen_newline = False
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(BLOCK)
            if not chunk:
                break
            buf = carry + chunk if carry else chunk
            cut = buf.rfind(b"\n") + 1
            if not cut:  # no newline yet: a line longer than a block
                carry = buf
                continue
            seen_newline = True
            carry = buf[cut:]
            yield buf[:cut] if carry else buf
    yield carry, seen_newline and (not carry or bool(carry.strip()))


def _checked_table(data: bytes, spec: Spec, shard: _Shard) -> Any:
    """:func:`_block_table`, marking the shard failed (so no more of it is parsed) when it is None."""
    tb = _block_table(data, spec)
    if tb is None:
        shard.ok = False
    return tb


@dataclass
class _Shard:
    """A shard being parsed: its block tables (futures, in order) and its tail; ok=False: not columnar."""

    path: Path
    futures: list[Future[Any]]
    rest: bytes = b""
    ok: bool = True
    error: BaseException | None = None


def _produce(
    paths: list[Path], spec: Spec, pool: ThreadPoolExecutor, out: queue.Queue[_Shard], stop: threading.Event
) -> None:
    """Read every shard's blocks and hand them to the parsers (at most IN_FLIGHT waiting at once)."""
    pending: list[Future[Any]] = []
    for path in paths:
        if stop.is_set():  # nobody will read the rest
            return
        shard = _Shard(path, [])
        try:
            for item in _blocks(path):
                if isinstance(item, tuple):
                    shard.rest, clean = item
                    shard.ok = shard.ok and clean
                    break
                while len(pending) >= IN_FLIGHT:
                    pending.pop(0).result()
                if not shard.ok or stop.is_set():  # a block failed (the tolerant reader reads the shard), or closed
                    break
                fut = pool.submit(_checked_table, item, spec, shard)
                del item
                shard.futures.append(fut)
                pending.append(fut)
        except BaseException as exc:  # reading failed: the consumer raises it, as the reader always did
            shard.error = exc
        out.put(shard)


class Parsing:
    """Shards being parsed in threads, started ahead of the frames that will read them (see :func:`start`)."""

    def __init__(self, paths: list[Path], spec: Spec) -> None:
        self.paths, self.spec = list(paths), spec
        self.shards: queue.Queue[_Shard] = queue.Queue()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="wsstorm-parse")
        self._producer = threading.Thread(
            target=_produce, args=(self.paths, spec, self._pool, self.shards, self._stop), daemon=True
        )
        self._producer.start()

    def close(self) -> None:
        """Stop reading (blocks in a parser still finish) and end the threads; safe to call twice."""
        self._stop.set()
        self._producer.join()
        self._pool.shutdown(wait=True, cancel_futures=True)


def start(paths: list[Path], by_event: dict[str, dict[str, str]], float_cols: list[str]) -> Parsing | None:
    """Begin parsing ``paths`` now, for a later :func:`read_shards` of the same paths and columns: it needs
    numpy and pyarrow only, so the rest of the report's imports can happen while it runs.  None without
    pyarrow."""
    return Parsing(paths, spec_of(by_event, float_cols)) if pa is not None else None


def read_shards(
    paths: list[Path],
    by_event: dict[str, dict[str, str]],
    float_cols: list[str],
    frame: Callable[[Any], pd.DataFrame | None],
    tolerant: Callable[[Path], tuple[list[pd.DataFrame], list[str]]],
    parsing: Parsing | None = None,
) -> Iterator[tuple[list[pd.DataFrame], list[str]]]:
    """Each shard's frames and warnings, in order: ``frame`` (columnar) of the pyarrow table of its
    complete lines, else ``tolerant`` of the whole file; an unterminated last line always goes through
    the tolerant reader.  Parsing runs ahead in threads while the caller builds frames; ``parsing``: one
    :func:`start` began (used when it is of these paths and columns, else closed)."""
    if pa is None:  # pragma: no cover
        for p in paths:
            yield tolerant(p)
        return
    spec = spec_of(by_event, float_cols)
    if parsing is not None and (parsing.paths != list(paths) or parsing.spec != spec):
        parsing.close()
        parsing = None
    parsing = parsing or Parsing(paths, spec)
    try:
        for _ in paths:
            shard = parsing.shards.get()
            if shard.error is not None:
                raise shard.error
            yield _shard_frames(shard, frame, tolerant)
    finally:
        parsing.close()


def _shard_frames(
    shard: _Shard,
    frame: Callable[[Any], pd.DataFrame | None],
    tolerant: Callable[[Path], tuple[list[pd.DataFrame], list[str]]],
) -> tuple[list[pd.DataFrame], list[str]]:
    heads: list[pd.DataFrame] = []
    tables: list[Any] = []
    for fut in shard.futures:
        tb = fut.result() if shard.ok else None
        if tb is None:
            shard.ok = False
            break
        tables.append(tb)
        if len(tables) == GROUP and not _add_frame(heads, tables, frame):
            shard.ok = False
            break
    shard.futures.clear()
    if shard.ok and tables and not _add_frame(heads, tables, frame):
        shard.ok = False
    release_memory()
    if not shard.ok or not heads:
        return tolerant(shard.path)
    if not shard.rest:
        return heads, []
    # The tail alone, in a file of the same name, so read_jsonl words its warnings as for the shard.
    with tempfile.TemporaryDirectory() as tmp:
        tail = Path(tmp) / shard.path.name
        tail.write_bytes(shard.rest)
        frames, warnings = tolerant(tail)
    return [*heads, *frames], warnings


def _add_frame(heads: list[pd.DataFrame], tables: list[Any], frame: Callable[[Any], pd.DataFrame | None]) -> bool:
    """Append the frame of ``tables`` (emptied) to ``heads``; False when ``frame`` cannot prove it (None)."""
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    tables.clear()
    head = frame(table)
    if head is None:
        return False
    heads.append(head)
    return True


__all__ = ["MIXED", "TEXT", "Parsing", "read_shards", "release_memory", "spec_of", "start"]
