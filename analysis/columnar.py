"""Columnar (pyarrow) reading of an events shard: the fast path of :mod:`analysis.load`.

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

from wsstorm.runfolder.jsonl import loads

try:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj
except ImportError:  # pragma: no cover - without pyarrow every shard takes the tolerant path
    pa = None

MAX_OPENERS = 1000  # orjson refuses nesting deeper than 1024; pyarrow does not: such lines go tolerant
BLOCK = 16 << 20  # pyarrow parse block: large blocks parse faster, one per thread


def _plausible(data: bytes) -> bool:
    """Cheap byte-level proof that the tolerant reader would accept every line of ``data`` (which
    ends with a newline) as one object, whenever pyarrow does."""
    n = data.count(b"\n")
    if not n or data[:1] != b"{" or b"\n\n" in data:
        return False  # empty lines: both readers skip them, but counting them exactly is not cheap
    # every line starts with '{' and ends with '}': no whitespace-only, non-object or BOM lines
    if data.count(b"\n{") != n - 1 or data.count(b"}\n") != n:
        return False
    if b"NaN" in data or b"Inf" in data:  # pyarrow accepts NaN/Infinity literals, orjson does not
        return False
    if not data.isascii():
        try:  # pyarrow does not check the UTF-8 of fields it ignores; orjson checks every string
            data.decode("utf-8")
        except UnicodeDecodeError:
            return False
    openers = data.count(b"[") + data.count(b"{")
    if openers - n >= MAX_OPENERS:
        arr = np.frombuffer(data, dtype=np.uint8)
        pos = np.flatnonzero((arr == ord("[")) | (arr == ord("{")))
        line = np.searchsorted(np.flatnonzero(arr == ord("\n")), pos)
        if np.bincount(line).max() >= MAX_OPENERS:
            return False
    return True


def _arrow_table(data: bytes, floats: list[str], strings: list[str]) -> Any:
    """The shard's columns as a pyarrow Table; None when pyarrow rejects the data."""
    schema = pa.schema([(f, pa.float64()) for f in floats] + [(f, pa.string()) for f in strings])
    opts = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:
        return pj.read_json(pa.BufferReader(data), read_options=pj.ReadOptions(block_size=BLOCK), parse_options=opts)
    except (pa.ArrowInvalid, UnicodeDecodeError, ValueError):
        return None


def _codes(col: Any) -> tuple[np.ndarray, list[Any]]:
    """Dictionary codes (-1 for null) and the dictionary of a string column."""
    enc = col.combine_chunks().dictionary_encode() if isinstance(col, pa.ChunkedArray) else col.dictionary_encode()
    idx = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return idx, enc.dictionary.to_pylist()


def _categorical(idx: np.ndarray, values: list[Any], rows: np.ndarray | None, cats: Callable) -> pd.Categorical:
    """The column the tolerant path builds with ``cats(values of rows)``, from dictionary codes
    (rows=None: every row)."""
    sub = idx if rows is None else idx[rows]
    present = np.unique(sub)
    seen = [values[i] for i in present if i >= 0] + ([None] if len(present) and present[0] < 0 else [])
    cat = cats(seen)
    remap = np.asarray(cat.categories.get_indexer(pd.Index(values, dtype=object)), dtype=np.int64)
    codes = np.where(idx >= 0, remap[np.maximum(idx, 0)] if len(remap) else -1, -1)
    if rows is not None:
        keep = np.zeros(len(idx), dtype=bool)
        keep[rows] = True
        codes = np.where(keep, codes, -1)
    return pd.Categorical.from_codes(codes, categories=cat.categories)


def _line_values(data: bytes, rows: np.ndarray, key: str) -> list[Any]:
    """``key`` of the given rows (row i = line i: one object per line was proven), parsed by orjson."""
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
    starts = np.concatenate(([0], ends[:-1] + 1))
    parts = [data[s:e] for s, e in zip(starts[rows].tolist(), ends[rows].tolist(), strict=True)]
    recs = loads(b"[" + b",".join(parts) + b"]")
    return [r.get(key) for r in recs]


def events_table(
    data: bytes,
    common: tuple[str, ...],
    by_event: dict[str, dict[str, str]],
    float_cols: list[str],
    cats: Callable[[list[Any]], pd.Categorical],
) -> pd.DataFrame | None:
    """The events frame of ``data`` (whole lines, newline-terminated) with the columns, dtypes and
    values the tolerant path (analysis.load._events_frame) builds; None if it cannot prove that."""
    if pa is None or not _plausible(data):
        return None
    per_field = {f: k for fields in by_event.values() for f, k in fields.items()}
    strings = ["user", "event", *(f for f, k in per_field.items() if k in ("c", "o") and f != "after_code")]
    tb = _arrow_table(data, list(float_cols), strings)
    if tb is None or tb.num_rows != data.count(b"\n"):  # two objects on one line: not what orjson reads
        return None
    n = tb.num_rows
    out: dict[str, Any] = {c: tb.column(c).to_numpy() for c in ("t", "conn", "v")}
    uidx, uvals = _codes(tb.column("user"))
    out["user"] = _categorical(uidx, uvals, None, cats)
    eidx, evals = _codes(tb.column("event"))
    event = _categorical(eidx, evals, None, cats)
    out["event"] = event
    ev_codes = np.asarray(event.codes)
    for c in float_cols[3:]:
        out[c] = np.full(n, np.nan)
    for c in ("kind", "by", "after_code"):
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
            elif f in strings:
                fidx, fvals = _codes(tb.column(f))
                out[f] = _categorical(fidx, fvals, idx, cats)
            else:  # mixed-type field (after_code: a close code or a fail kind): orjson's values, as tolerant
                cat = cats(_line_values(data, idx, f))
                codes = np.full(n, -1, dtype=np.int32)
                codes[idx] = cat.codes
                out[f] = pd.Categorical.from_codes(codes, categories=cat.categories)
    for c in ("kind", "by", "after_code"):
        if out[c] is None:
            out[c] = pd.Categorical.from_codes(np.full(n, -1, dtype=np.int8), categories=pd.Index([], dtype=object))
    return pd.DataFrame(out)


def read_shard(
    path: Path,
    frame: Callable[[bytes], pd.DataFrame | None],
    tolerant: Callable[[Path], tuple[list[pd.DataFrame], list[str]]],
) -> tuple[list[pd.DataFrame], list[str]]:
    """A shard's frames and warnings: ``frame`` (columnar) on its complete lines, else ``tolerant``
    on the whole file; an unterminated last line always goes through the tolerant reader."""
    data = Path(path).read_bytes()
    cut = data.rfind(b"\n") + 1
    head = frame(data[:cut] if cut < len(data) else data) if cut else None
    if head is None:
        del data
        return tolerant(path)
    if cut == len(data):
        return [head], []
    # The tail alone, in a file of the same name, so read_jsonl words its warnings as for the shard.
    with tempfile.TemporaryDirectory() as tmp:
        tail = Path(tmp) / Path(path).name
        tail.write_bytes(data[cut:])
        frames, warnings = tolerant(tail)
    return [head, *frames], warnings


__all__ = ["events_table", "read_shard"]
