"""Columnar (pyarrow) reading of an events shard: the fast path of :mod:`wsstorm.analysis.load`.

It only takes a shard it can prove the tolerant reader (``wsstorm.runfolder.jsonl.read_jsonl``) would
read the same way: every line an object that orjson accepts.  Anything else (garbage, non-object or
empty lines, NaN/Infinity literals, bad UTF-8, very deep nesting, two objects on a line, a type
pyarrow will not convert) returns None and the caller takes the tolerant path, so the warnings and
skipped lines stay exactly those of the tolerant reader.  A last line without its newline (the
writer was interrupted) is handed to the tolerant reader alone.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

try:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    # The system allocator hands freed buffers back at once; mimalloc kept ~90 MiB of parser scratch
    # and pandas' arrow-backed text around, which showed as peak RSS (issue 16: <= 500 MiB).
    pa.set_memory_pool(pa.system_memory_pool())
except ImportError:  # pragma: no cover - without pyarrow every shard takes the tolerant path
    pa = None

MAX_OPENERS = 1000  # orjson refuses nesting deeper than 1024; pyarrow does not: such lines go tolerant
BLOCK = 4 << 20  # pyarrow parse block (one per thread): 4 MiB measured fastest here, 1 and 16 slower


def _plausible(data: bytes) -> int:
    """Cheap byte-level checks that, together with pyarrow accepting ``data`` (newline-terminated)
    with one row per line, prove the tolerant reader would read every line as one object.
    Returns the number of lines, or 0 when a check fails."""
    n = data.count(b"\n")
    # Every line ends with '}' (so none is empty, whitespace-only or a bare null/number/array, which
    # pyarrow would skip or take as a row) and the file does not start with a BOM (pyarrow skips it).
    if not n or data[:1] != b"{" or data.count(b"}\n") != n:
        return 0
    if b"NaN" in data or b"Inf" in data:  # pyarrow accepts NaN/Infinity literals, orjson does not
        return 0
    if not data.isascii():
        try:  # pyarrow does not check the UTF-8 of fields it ignores; orjson checks every string
            data.decode("utf-8")
        except UnicodeDecodeError:
            return 0
    if data.count(b"[") + data.count(b"{") - n >= MAX_OPENERS:
        arr = np.frombuffer(data, dtype=np.uint8)
        pos = np.flatnonzero((arr == ord("[")) | (arr == ord("{")))
        line = np.searchsorted(np.flatnonzero(arr == ord("\n")), pos)
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
            key = b'"' + f.encode() + b'"' + sep + b'"'
            if key in data:
                data = data.replace(key, b'"' + (f + TEXT).encode() + b'"' + sep + b'"')
    return data


def _arrow_table(data: bytes, floats: list[str], strings: list[str]) -> Any:
    """The shard's columns as a pyarrow Table; None when pyarrow rejects the data."""
    fields = [(f, pa.float64()) for f in floats] + [(f, pa.string()) for f in strings]
    fields += [(f, pa.int64()) for f in MIXED] + [(f + TEXT, pa.string()) for f in MIXED]
    opts = pj.ParseOptions(explicit_schema=pa.schema(fields), unexpected_field_behavior="ignore")
    try:
        return pj.read_json(pa.BufferReader(data), read_options=pj.ReadOptions(block_size=BLOCK), parse_options=opts)
    except (pa.ArrowInvalid, UnicodeDecodeError, ValueError):
        return None


def _codes(col: Any) -> tuple[np.ndarray, list[Any]]:
    """Dictionary codes (-1 for null) and the dictionary of a column."""
    enc = col.combine_chunks().dictionary_encode() if isinstance(col, pa.ChunkedArray) else col.dictionary_encode()
    idx = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return idx, enc.dictionary.to_pylist()


def _categorical(
    n: int, parts: list[tuple[np.ndarray, list[Any]]], rows: np.ndarray | None, cats: Callable
) -> pd.Categorical | None:
    """The column the tolerant path builds with ``cats(values of rows)`` (rows=None: every row), from
    dictionary codes; ``parts`` are (codes, dictionary) of columns of which at most one is set per row.
    None when two are set on one row (a duplicated key: orjson would keep the last)."""
    seen: list[Any] = []
    remaps, subs = [], []
    unset = np.ones(n if rows is None else len(rows), dtype=bool)
    for idx, values in parts:
        sub = idx if rows is None else idx[rows]
        have = sub >= 0
        if (have & ~unset).any():
            return None
        unset &= ~have
        present = np.unique(sub[have])
        remap = np.full(len(values) + 1, -1, dtype=np.int64)  # last slot: code of a null
        remap[present] = np.arange(len(seen), len(seen) + len(present))
        seen += [values[i] for i in present.tolist()]
        remaps.append(remap)
        subs.append(sub)
    if unset.any():
        seen.append(None)
    cat = cats(seen)
    seen_codes = np.append(np.asarray(cat.codes, dtype=np.int64), -1)
    codes = np.full(len(unset), -1, dtype=np.int64)
    for sub, remap in zip(subs, remaps, strict=True):
        have = sub >= 0
        codes[have] = seen_codes[remap[sub[have]]]
    if rows is not None:
        full = np.full(n, -1, dtype=np.int64)
        full[rows] = codes
        codes = full
    return pd.Categorical.from_codes(codes, categories=cat.categories)


def events_table(
    box: list[bytes],
    by_event: dict[str, dict[str, str]],
    float_cols: list[str],
    cats: Callable[[list[Any]], pd.Categorical],
) -> pd.DataFrame | None:
    """The events frame of the bytes in ``box`` (whole lines, newline-terminated; taken out of the box
    so they are freed once parsed) with the columns, dtypes and values the tolerant path
    (analysis.load._events_frame) builds; None if it cannot prove that."""
    data = box.pop()
    n_lines = _plausible(data) if pa is not None else 0
    if not n_lines:
        return None
    split = _split_mixed(data)
    del data  # the shard's bytes: only their renamed copy is needed now (peak memory)
    if split is None:
        return None
    per_field = {f: k for fields in by_event.values() for f, k in fields.items()}
    strings = ["user", "event", *(f for f, k in per_field.items() if k in ("c", "o") and f not in MIXED)]
    tb = _arrow_table(split, list(float_cols), strings)
    del split
    if tb is None or tb.num_rows != n_lines:  # two objects on one line: not what orjson reads
        return None
    n = tb.num_rows
    out: dict[str, Any] = {c: tb.column(c).to_numpy() for c in ("t", "conn", "v")}
    out["user"] = _categorical(n, [_codes(tb.column("user"))], None, cats)
    event = _categorical(n, [_codes(tb.column("event"))], None, cats)
    assert event is not None  # one part alone can never be set twice on a row
    out["event"] = event
    ev_codes = np.asarray(event.codes)
    for c in float_cols[3:]:
        out[c] = np.full(n, np.nan)
    cat_cols = [f for f, k in per_field.items() if k == "c"]
    for c in cat_cols:
        out[c] = None
    out["reason"] = np.full(n, None, dtype=object)
    for name, fields in by_event.items():
        if name not in event.categories:
            continue
        idx = np.flatnonzero(ev_codes == event.categories.get_loc(name))
        for f, kind in fields.items():
            if kind == "f":
                out[f][idx] = tb.column(f).take(pa.array(idx)).to_numpy()
            elif kind == "o":
                out[f][idx] = tb.column(f).take(pa.array(idx)).to_numpy(zero_copy_only=False)
            else:
                cols = [f, f + TEXT] if f in MIXED else [f]
                out[f] = _categorical(n, [_codes(tb.column(c)) for c in cols], idx, cats)
                if out[f] is None:
                    return None
    for c in cat_cols:
        if out[c] is None:
            out[c] = pd.Categorical.from_codes(np.full(n, -1, dtype=np.int8), categories=pd.Index([], dtype=object))
    return pd.DataFrame(out)


def read_shard(
    path: Path,
    frame: Callable[[list[bytes]], pd.DataFrame | None],
    tolerant: Callable[[Path], tuple[list[pd.DataFrame], list[str]]],
) -> tuple[list[pd.DataFrame], list[str]]:
    """A shard's frames and warnings: ``frame`` (columnar) on its complete lines, else ``tolerant``
    on the whole file; an unterminated last line always goes through the tolerant reader."""
    data = Path(path).read_bytes()
    cut = data.rfind(b"\n") + 1
    # A whitespace-only last line alone would parse as nothing, yet after the others it is a bad line.
    clean_tail = cut == len(data) or bool(data[cut:].strip())
    if not cut or not clean_tail:
        return tolerant(path)
    rest = data[cut:]
    box = [data if not rest else data[:cut]]
    del data
    head = frame(box)
    if head is None:
        return tolerant(path)
    if not rest:
        return [head], []
    # The tail alone, in a file of the same name, so read_jsonl words its warnings as for the shard.
    with tempfile.TemporaryDirectory() as tmp:
        tail = Path(tmp) / Path(path).name
        tail.write_bytes(rest)
        frames, warnings = tolerant(tail)
    return [head, *frames], warnings


__all__ = ["events_table", "read_shard"]
