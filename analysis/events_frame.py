"""The events frame of a shard parsed by :mod:`.columnar` (a pyarrow table): the columns, dtypes and values
the tolerant path (``analysis.load._events_frame``) builds from the same lines, or None where that cannot be
proved (a key set twice on a line)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .columnar import MIXED, TEXT


def _codes(col: Any) -> tuple[np.ndarray, list[Any]]:
    """Dictionary codes (-1 for null) and the dictionary of a column."""
    if isinstance(col, pa.ChunkedArray) and col.num_chunks > 1:
        # a chunked column is encoded against one dictionary, shared by its chunks (no copy of the text
        # into one chunk first); should one chunk ever carry another, the column is encoded whole
        chunks = col.dictionary_encode().chunks
        first = chunks[0].dictionary
        if all(c.dictionary.equals(first) for c in chunks[1:]):
            indices = pa.chunked_array([c.indices for c in chunks])
            idx = pc.fill_null(indices, -1).to_numpy().astype(np.int64)
            return idx, first.to_pylist()
        col = col.combine_chunks()
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
        present = np.flatnonzero(np.bincount(sub[have], minlength=len(values)))  # sorted, as np.unique
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


def _text(col: Any, rows: np.ndarray) -> np.ndarray | pd.api.extensions.ExtensionArray:
    """A text column (null where ``rows`` is False) as the tolerant path's frame infers it from the same
    values: pandas' str dtype, built straight from the arrow buffers (inferring it from a million Python
    objects cost ~0.1 s a shard); an object array of None when no row has a value."""
    kept = pc.if_else(pa.array(rows), col, pa.scalar(None, type=col.type))
    if kept.null_count == len(kept):
        return np.full(len(kept), None, dtype=object)
    return pd.array(kept, dtype="str")


def events_table(
    tb: Any,
    by_event: dict[str, dict[str, str]],
    float_cols: list[str],
    cats: Callable[[list[Any]], pd.Categorical],
) -> pd.DataFrame | None:
    """The events frame of a shard's pyarrow table (see :func:`read_shards`) with the columns, dtypes and
    values the tolerant path (analysis.load._events_frame) builds; None if it cannot prove that."""
    n = tb.num_rows
    out: dict[str, Any] = {c: tb.column(c).to_numpy() for c in ("t", "conn", "v")}
    out["user"] = _categorical(n, [_codes(tb.column("user"))], None, cats)
    event = _categorical(n, [_codes(tb.column("event"))], None, cats)
    assert event is not None  # one part alone can never be set twice on a row
    out["event"] = event
    ev_codes = np.asarray(event.codes)
    per_field = {f: k for fields in by_event.values() for f, k in fields.items()}
    cat_cols = [f for f, k in per_field.items() if k == "c"]
    for c in float_cols[3:]:
        out[c] = None
    for c in cat_cols:
        out[c] = None
    out["reason"] = np.full(n, None, dtype=object)
    for name, fields in by_event.items():
        if name not in event.categories:
            continue
        mine = ev_codes == event.categories.get_loc(name)
        idx = np.flatnonzero(mine)
        for f, kind in fields.items():
            if kind == "f":  # the whole column at once (nulls -> NaN), blanked where another event type is
                out[f] = np.where(mine, tb.column(f).to_numpy(), np.nan)
            elif kind == "o":
                out[f] = _text(tb.column(f), mine)
            else:
                cols = [f, f + TEXT] if f in MIXED else [f]
                out[f] = _categorical(n, [_codes(tb.column(c)) for c in cols], idx, cats)
                if out[f] is None:
                    return None
    for c in float_cols[3:]:
        if out[c] is None:
            out[c] = np.full(n, np.nan)
    for c in cat_cols:
        if out[c] is None:
            out[c] = pd.Categorical.from_codes(np.full(n, -1, dtype=np.int8), categories=pd.Index([], dtype=object))
    # copy=False: no consolidation of the float columns into one 2-d block (a copy of every one of them)
    return pd.DataFrame(out, copy=False)


__all__ = ["events_table"]
