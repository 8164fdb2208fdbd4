"""Load a run folder (manifest, event shards, server log, faults) into pandas.

Tolerant: truncated or garbage lines, duplicate or missing shards, a missing
server or faults log are recorded in ``Run.warnings`` (the report shows them),
never raised.  A folder with nothing to analyse is a UsageError.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wsstorm.errors import UsageError
from wsstorm.runfolder import names, schemas
from wsstorm.runfolder.jsonl import read_jsonl

from . import columnar
from .events_frame import events_table
from .fields import BY_EVENT, EVENT_CATS, EVENT_FLOATS
from .server_log import (  # noqa: F401  (re-exported: the loader's public names)
    COST_FIELDS,
    MAX_SPREAD_S,
    add_server_columns,
    cost_budget,
    disruptions_of,
    load_faults,
    load_server,
)
from .server_log import number as _num

KNOWN_EVENTS = set(schemas.EVENTS)


@dataclass
class Run:
    """Everything analysis needs from one run folder."""

    path: Path
    manifest: dict[str, Any]
    events: pd.DataFrame | None  # None for simulated runs
    conns: pd.DataFrame | None  # one row per opened connection
    server: pd.DataFrame | None  # server ticks (one row per tick)
    disruptions: pd.DataFrame  # columns t (s since start), fault, source
    series: pd.DataFrame  # the analysis series frame, index s
    t0: float
    end: float  # run end, seconds since t0
    downtimes: np.ndarray | None = None  # simulated runs: downtimes.csv
    attempts: pd.DataFrame | None = None  # attempts with their outcome
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    # tables derived from the frames above, built once per run and shared by the metrics of every scope
    # and the charts (see analysis.metrics.derived); never part of the run's identity
    derived: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def simulated(self) -> bool:
        return bool(self.manifest.get("simulated")) or self.events is None

    @property
    def budget(self) -> float | None:
        """The server's handshake budget (handshakes per second), when known: its token bucket's rate,
        else (bucket off) what its cost model lets it finish per second (see :func:`cost_budget`)."""
        return _target_value(self, "handshake_rate") or cost_budget(self._target_settings())

    @property
    def budget_source(self) -> str:
        """Where :attr:`budget` came from: 'token bucket', 'cost model (estimate)' or 'unknown'."""
        if _target_value(self, "handshake_rate"):
            return "token bucket"
        return "cost model (estimate)" if cost_budget(self._target_settings()) else "unknown"

    def _target_settings(self) -> dict[str, Any]:
        scenario = self.manifest.get("scenario")
        out: dict[str, Any] = {}
        for src in (
            (scenario.get("target") if isinstance(scenario, dict) else None) or {},
            self.manifest.get("target") or {},
        ):
            if isinstance(src, dict):
                out.update(src)
        return out

    @property
    def capacity(self) -> float | None:
        """The server's connection capacity, when known."""
        return _target_value(self, "capacity")


def _target_value(run: Run, key: str) -> float | None:
    col = {"handshake_rate": "handshake_rate", "capacity": "capacity"}[key]
    if col in run.series and run.series[col].notna().any():
        v = float(run.series[col].max())
        if v > 0:
            return v
    scenario = run.manifest.get("scenario")
    for src in (
        run.manifest.get("target") or {},
        (scenario.get("target") if isinstance(scenario, dict) else None) or {},
    ):
        raw = src.get(key) if isinstance(src, dict) else None
        if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw > 0:
            return float(raw)
    return None


# -- JSON Lines (parsing: wsstorm.runfolder.jsonl) -----------------------------


COLUMNAR = True  # the pyarrow fast path (analysis.columnar); False: every shard is read tolerantly


def shards_frames(
    paths: list[Path], parsing: columnar.Parsing | None = None
) -> Iterator[tuple[list[pd.DataFrame], list[str]]]:
    """Each events shard as frames and its warnings, in order: columnar when the shard is provably
    clean, else (and for an unterminated last line) the tolerant reader.  ``parsing``: a parse
    :func:`.columnar.start` began (closed unused when COLUMNAR is off)."""
    if COLUMNAR:
        # (tolerant_frames looked up at each call: tests replace it to see which path a shard took)
        tolerant = lambda p: tolerant_frames(p)
        yield from columnar.read_shards(paths, BY_EVENT, EVENT_FLOATS, _columnar_frame, tolerant, parsing)
    else:
        if parsing is not None:
            parsing.close()
        for p in paths:
            yield tolerant_frames(p)


def shard_frames(path: Path) -> tuple[list[pd.DataFrame], list[str]]:
    """One events shard as frames and its warnings (see :func:`shards_frames`)."""
    (out,) = shards_frames([path])
    return out


def _columnar_frame(table: Any) -> pd.DataFrame | None:
    return events_table(table, BY_EVENT, EVENT_FLOATS, _cats)


def tolerant_frames(path: Path) -> tuple[list[pd.DataFrame], list[str]]:
    """One events shard through the tolerant reader (read_jsonl): frames, one per chunk, and warnings."""
    warnings: list[str] = []
    frames = [_events_frame(chunk) for chunk in read_jsonl(path, warnings, "events") if chunk]
    return frames, warnings


def _floats(col: list[Any]) -> np.ndarray:
    try:
        arr = np.array(col, dtype=float)  # None -> nan
        if arr.ndim == 1:  # all scalars ([[], []] would make a 2-d array: a list where a number belongs)
            return arr
    except (TypeError, ValueError):
        pass
    scalars = [None if isinstance(v, (list, dict)) else v for v in col]
    out: np.ndarray = pd.to_numeric(pd.Series(scalars, dtype=object), errors="coerce").to_numpy(dtype=float)
    return out


def _cats(col: list[Any]) -> pd.Categorical:
    try:
        return pd.Categorical(col)
    except TypeError:  # mixed types (after_code is an int or a fail kind): compare as text
        return pd.Categorical([None if x is None else str(x) for x in col])


def _get(recs: Any, key: str) -> list[Any]:
    return list(map(dict.get, recs, repeat(key)))  # C-level loop: no bytecode per record


def _events_frame(chunk: list[dict[str, Any]]) -> pd.DataFrame:
    # Extract only the fields analysis reads, per event type, with C-level map/itemgetter:
    # a Python-level loop over a million dicts would cost more than the JSON parsing.
    n = len(chunk)
    out: dict[str, Any] = {c: _floats(_get(chunk, c)) for c in ("t", "conn", "v")}
    out["user"] = _cats(_get(chunk, "user"))
    event = _cats(_get(chunk, "event"))
    out["event"] = event
    ev_codes = np.asarray(event.codes)
    for c in EVENT_FLOATS[3:]:
        out[c] = np.full(n, np.nan)
    for c in ("kind", "by", "after_code"):
        out[c] = None
    out["reason"] = np.full(n, None, dtype=object)
    for name, fields in BY_EVENT.items():
        if name not in event.categories:
            continue
        idx = np.flatnonzero(ev_codes == event.categories.get_loc(name))
        sub = [chunk[i] for i in idx] if len(idx) < 2 else list(itemgetter(*idx)(chunk))
        for f, kind in fields.items():
            vals = _get(sub, f)
            if kind == "f":
                out[f][idx] = _floats(vals)
            elif kind == "o":
                out[f][idx] = vals
            else:
                cat = _cats(vals)
                codes = np.full(n, -1, dtype=np.int32)
                codes[idx] = cat.codes
                out[f] = pd.Categorical.from_codes(codes, categories=cat.categories)
    for c in ("kind", "by", "after_code"):
        if out[c] is None:
            out[c] = pd.Categorical.from_codes(np.full(n, -1, dtype=np.int8), categories=pd.Index([], dtype=object))
    return pd.DataFrame(out)


def _align_categories(frames: list[pd.DataFrame]) -> None:
    """Give each text categorical column the same (sorted, union) categories in every frame, so
    concat keeps it categorical: the object fallback would re-factorize a million strings."""
    for c in EVENT_CATS:
        cats = [f[c].cat.categories for f in frames]
        if all(x.equals(cats[0]) for x in cats) or not all(
            pd.api.types.is_string_dtype(x.dtype) and all(isinstance(v, str) for v in x) for x in cats if len(x)
        ):
            continue
        union = pd.Index(sorted(set().union(*(x.tolist() for x in cats))))
        for f in frames:
            remap = np.append(union.get_indexer(f[c].cat.categories), -1)  # code -1 (null) stays -1
            f[c] = pd.Categorical.from_codes(remap[np.asarray(f[c].cat.codes)], categories=union)


def _text_categories(col: pd.Series) -> pd.Series:
    """The column with sorted text categories (after_code: 1012 and "1012" are one category), however
    it was split into chunks or shards: a close code read as an int in one chunk and as text in
    another (where it met a fail kind) must not count as two codes."""
    cats = col.cat.categories
    if len(cats) == 0:
        return col if cats.dtype == object else col.cat.set_categories(pd.Index([], dtype=object))
    if (
        pd.api.types.is_string_dtype(cats.dtype)
        and cats.is_monotonic_increasing
        and all(isinstance(x, str) for x in cats)
    ):
        return col
    # a chunk whose codes were all null has float categories, and concat with an int one upcasts the
    # codes to floats: 1012.0 is the code 1012
    text = [str(int(x)) if isinstance(x, float) and x.is_integer() else str(x) for x in cats]
    uniq = pd.Index(sorted(set(text)))
    remap = np.append(uniq.get_indexer(text), -1)  # code -1 (null) stays -1
    codes = remap[np.asarray(col.cat.codes)]
    return pd.Series(pd.Categorical.from_codes(codes, categories=uniq), index=col.index, name=col.name)


DEDUPE_KEY = ["t", "user", "conn", "event"]


def _dedupe_sorted(df: pd.DataFrame, rows: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, int]:
    """``rows`` of ``df`` without repeats of DEDUPE_KEY (the first one kept), in stable order of time, and
    how many were dropped: as ``drop_duplicates`` then a stable ``sort_values("t")``, but pandas only
    compares the rows whose time another row shares (a duplicate has its twin's time)."""
    order = np.argsort(t[rows], kind="stable")
    rows = rows[order]
    ts = t[rows]
    same = ts[1:] == ts[:-1]
    cand = np.zeros(len(rows), dtype=bool)
    cand[1:] = same
    cand[:-1] |= same
    at = np.flatnonzero(cand)
    if not len(at):
        return rows, 0
    # in time order, rows of one time keep their first-read order (stable sort): "first" is unchanged.
    # Most times are shared by two rows (a close and the wait after it): such a pair is compared on its
    # codes here, and only the rows of longer runs go to pandas' duplicated.
    run_start = np.ones(len(at), dtype=bool)
    run_start[1:] = ts[at[1:]] != ts[at[:-1]]
    run_id = np.cumsum(run_start) - 1
    in_pair = np.bincount(run_id)[run_id] == 2
    first = at[run_start & in_pair]
    a, b = rows[first], rows[first + 1]
    same = np.ones(len(first), dtype=bool)
    for c in ("user", "event"):
        codes = _row_codes(df[c])
        same &= codes[a] == codes[b]
    conn = df["conn"].to_numpy(dtype=float)
    same &= (conn[a] == conn[b]) | (np.isnan(conn[a]) & np.isnan(conn[b]))  # a missing conn is one value
    dup_at = [first[same] + 1]
    longer = at[~in_pair]
    if len(longer):
        dup_at.append(longer[df[DEDUPE_KEY].take(rows[longer]).duplicated().to_numpy()])
    drop = np.concatenate(dup_at)
    if not len(drop):
        return rows, 0
    keep = np.ones(len(rows), dtype=bool)
    keep[drop] = False
    return rows[keep], len(drop)


def _row_codes(col: pd.Series) -> np.ndarray:
    """Integer codes of a column, equal where its values are (a categorical's own codes, else factorized)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return np.asarray(col.cat.codes.to_numpy())
    codes, _ = pd.factorize(col, use_na_sentinel=False)
    return np.asarray(codes)


PLAUSIBLE_SPAN_S = 7 * 86400  # a run longer than a week is taken to be a corrupt timestamp


def plausible_window(t: pd.Series, started: float | None, ended: float | None) -> tuple[float, float]:
    """Epoch bounds inside which an event can belong to this run (one bad clock or corrupt line must
    not stretch the per-second series to years)."""
    anchor = started if started is not None else float(t.median())
    lo = anchor - 60 if started is not None else anchor - PLAUSIBLE_SPAN_S
    hi = ended + 60 if ended is not None and ended >= anchor else anchor + PLAUSIBLE_SPAN_S
    return lo, hi


def load_events(
    folder: Path,
    manifest: dict[str, Any],
    warnings: list[str],
    counts: dict[str, int],
    parsing: columnar.Parsing | None = None,
) -> pd.DataFrame | None:
    """Read every events-*.jsonl shard into one frame sorted by time (``parsing``: see :func:`shards_frames`)."""
    shards = names.event_shards(folder)
    expected = manifest.get("workers") or []
    if isinstance(expected, list):
        present = {p.name for p in shards}
        missing = [str(w) for w in expected if names.shard_name(str(w)) not in present]
        if missing and shards:
            warnings.append(
                f"missing event shard(s) for worker(s) {', '.join(missing)}: their users are not in the numbers"
            )
    if not shards:
        return None
    frames = []
    for fr, ws in shards_frames(shards, parsing):  # (threads parse the next shard while this one becomes a frame)
        frames.extend(fr)
        warnings.extend(ws)
    if not frames:
        warnings.append("the event shards hold no events")
        return None
    if len(frames) > 1:
        _align_categories(frames)
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    n_frames = len(frames)
    frames.clear()  # the shards' frames: freed before the copies below (filter, dedupe, sort) - peak RSS
    for c in EVENT_CATS:  # concat of differing categories falls back to object
        if not isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype("category")
        df[c] = _text_categories(df[c])
    if df["reason"].dtype == object and n_frames > 1:  # text in one frame, all-null in another
        df["reason"] = pd.Series(df["reason"].to_numpy(dtype=object), index=df.index)  # as one frame infers
    n = len(df)
    # The filters, the dedupe and the sort by time pick rows: worked out on arrays, then one take (each
    # step taking its own copy of a million rows cost ~0.5 s)
    t = df["t"].to_numpy(dtype=float)
    ok = df["event"].notna().to_numpy() & df["user"].notna().to_numpy() & np.isfinite(t)
    rows = np.arange(n)
    if not ok.all():
        warnings.append(f"{int((~ok).sum())} event(s) without t/event/user skipped")
        rows = rows[ok]
    lo, hi = plausible_window(pd.Series(t[rows]), _num(manifest.get("started")), _num(manifest.get("ended")))
    implausible = (t[rows] < lo) | (t[rows] > hi)
    if implausible.any():
        warnings.append(f"{int(implausible.sum())} event(s) with a timestamp far outside the run skipped")
        rows = rows[~implausible]
    v = df["v"].to_numpy(dtype=float)[rows]
    other_v = ~np.isnan(v) & (v != 1)
    if other_v.any():
        warnings.append(f"{int(other_v.sum())} event(s) of an unknown log version (v != 1) skipped")
        rows = rows[~other_v]
    ev_cats = df["event"].cat.categories
    known = [i for i, c in enumerate(ev_cats) if c in KNOWN_EVENTS]
    unknown = ~np.isin(df["event"].cat.codes.to_numpy()[rows], known)
    if unknown.any():
        warnings.append(f"{int(unknown.sum())} event(s) of unknown type ignored")
    rows, dup = _dedupe_sorted(df, rows, t)
    if dup:
        warnings.append(f"{dup} duplicate event(s) removed (a shard was written or copied twice?)")
    df = df.take(rows).reset_index(drop=True)
    columnar.release_memory()
    df["event"] = df["event"].cat.remove_unused_categories()
    counts.update(events_read=n, events_duplicate=dup, events=len(df))
    if df.empty:  # every line was unusable: nothing to analyse, said as for an empty shard
        warnings.append("the event shards hold no usable events")
        return None
    return df


# -- derived tables ------------------------------------------------------------


def ready_gated(manifest: dict[str, Any], ev: pd.DataFrame) -> bool:
    """True when the run had a ready condition (an application handshake, Socket.IO, graphql-ws): to a user a
    socket that is open but not yet ready is still down, so connections count from their ``ready``."""
    opts = manifest.get("options")
    if isinstance(opts, dict) and (opts.get("ready_match") or opts.get("protocol") in ("socketio", "graphql-ws")):
        return True
    return bool((ev["event"] == "ready").any())


def build_conns(ev: pd.DataFrame, end_abs: float, gated: bool = False) -> pd.DataFrame:
    """One row per opened connection (with a ready condition: per ready one, from its ready): user, conn,
    open_t, close_t, code, by, uptime (absolute times)."""
    opened = "ready" if gated else "open"
    opens = ev.loc[ev["event"] == opened, ["user", "conn", "t"]].rename(columns={"t": "open_t"})
    opens = opens.drop_duplicates(["user", "conn"])
    closes = ev.loc[ev["event"] == "close", ["user", "conn", "t", "code", "by", "reason"]].rename(
        columns={"t": "close_t"}
    )
    closes = closes.drop_duplicates(["user", "conn"])
    c = opens.merge(closes, on=["user", "conn"], how="left", sort=False)
    c["uptime"] = c["close_t"].fillna(end_abs) - c["open_t"]
    return c.reset_index(drop=True)


def _code_of(col: pd.Series, value: str) -> int:
    """The categorical code of ``value`` in ``col`` (-2, which no row has, when it is not a category)."""
    cats = col.cat.categories
    return int(cats.get_loc(value)) if value in cats else -2


def attempt_outcomes(ev: pd.DataFrame, conns: pd.DataFrame, gated: bool = False) -> pd.DataFrame:
    """Attempts with the outcome column of the series frame (open, 1013, refused ...); with a ready condition an
    attempt opened when it became ready, and a ready reply that never came is a timeout.  Each attempt's
    outcome is the event that follows it for its user (in time order); on categorical codes, no objects."""
    opened_event = "ready" if gated else "open"
    event, kind = ev["event"], ev["kind"]
    c_att, c_open, c_fail = (_code_of(event, x) for x in ("attempt", opened_event, "fail"))
    ev_codes = event.cat.codes.to_numpy()
    sel = np.flatnonzero(np.isin(ev_codes, [c_att, c_open, c_fail]))
    users = ev["user"].cat.codes.to_numpy()[sel]
    t = ev["t"].to_numpy(dtype=float)[sel]
    order = sel[np.lexsort((t, users))]  # stable: same-t attempt stays before its open
    u_s = ev["user"].cat.codes.to_numpy()[order]
    e_s = ev_codes[order]
    # the next row's event, kind and status (none after the last row)
    same_user = np.zeros(len(order), dtype=bool)
    same_user[:-1] = u_s[1:] == u_s[:-1]
    nxt_event = np.full(len(order), -3, dtype=np.int64)
    nxt_event[:-1] = e_s[1:]
    k_s = kind.cat.codes.to_numpy()[order]
    nxt_kind = np.full(len(order), -3, dtype=np.int64)
    nxt_kind[:-1] = k_s[1:]
    st_s = ev["status"].to_numpy(dtype=float)[order]
    nxt_status = np.full(len(order), np.nan)
    nxt_status[:-1] = st_s[1:]
    is_att = e_s == c_att
    at = order[is_att]
    a = pd.DataFrame(
        {
            "user": pd.Categorical.from_codes(u_s[is_att], dtype=ev["user"].dtype),
            "t": ev["t"].to_numpy()[at],
            "conn": ev["conn"].to_numpy()[at],
        }
    )
    ne, su, kd, st = nxt_event[is_att], same_user[is_att], nxt_kind[is_att], nxt_status[is_att]
    out = np.full(len(a), "other", dtype=object)
    opened = su & (ne == c_open)
    failed = su & (ne == c_fail)
    out[failed & (kd == _code_of(kind, "refused"))] = "refused"
    out[failed & ((kd == _code_of(kind, "timeout")) | (kd == _code_of(kind, "ready_timeout")))] = "timeout"
    http = failed & (kd == _code_of(kind, "http_status"))
    out[http] = "http_other"
    out[http & (st == 503)] = "http_503"
    out[http & (st == 429)] = "http_429"
    out[opened] = "open"
    # accepted, then closed by the server with 1013 within 1 s: the server's overload answer
    quick = conns.loc[(conns["code"] == 1013) & (conns["by"] == "server") & (conns["uptime"] <= 1.0), ["user", "conn"]]
    if len(quick):
        out[opened & _pairs_in(a, quick)] = "1013"
    a["outcome"] = out
    return a


def _pairs_in(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    """Mask of the rows of ``a`` whose (user, conn) is a row of ``b`` (a missing conn matches a missing
    conn, as in a MultiIndex), on integer keys when both users share their categories."""
    if not a["user"].cat.categories.equals(b["user"].cat.categories):
        key = pd.MultiIndex.from_frame(a[["user", "conn"]].astype({"user": "string"}))
        qkey = pd.MultiIndex.from_frame(b[["user", "conn"]].astype({"user": "string"}))
        found: np.ndarray = key.isin(qkey)
        return found
    conn_codes, uniq = pd.factorize(np.concatenate([a["conn"].to_numpy(dtype=float), b["conn"].to_numpy(dtype=float)]))
    width = len(uniq) + 1  # code -1 (a missing conn) -> 0
    users = np.concatenate([a["user"].cat.codes.to_numpy(), b["user"].cat.codes.to_numpy()]).astype(np.int64)
    keys = users * width + (conn_codes + 1)
    mask: np.ndarray = np.isin(keys[: len(a)], keys[len(a) :])
    return mask


def series_from_events(
    ev: pd.DataFrame, conns: pd.DataFrame, attempts: pd.DataFrame, t0: float, n_s: int
) -> pd.DataFrame:
    """The analysis series frame (per second since t0) from events."""
    idx = pd.RangeIndex(n_s, name="s")

    def per_s(t: pd.Series | np.ndarray) -> np.ndarray:
        s = np.floor(np.asarray(t, dtype=float) - t0).astype(np.int64)
        s = s[(s >= 0) & (s < n_s)]
        return np.bincount(s, minlength=n_s)[:n_s]

    out = pd.DataFrame(index=idx)
    delta = per_s(conns["open_t"]) - per_s(conns["close_t"].dropna())
    out["connected"] = np.cumsum(delta)
    out["attempts"] = per_s(attempts["t"])
    for o, col in zip(schemas.OUTCOMES, schemas.OUTCOME_COLUMNS, strict=False):
        out[col] = per_s(attempts.loc[attempts["outcome"] == o, "t"])
    cl = conns.dropna(subset=["close_t"])
    for code in sorted(cl["code"].dropna().unique()):
        out[schemas.closes_column(int(code))] = per_s(cl.loc[cl["code"] == code, "close_t"])
    return out


def add_latency_columns(series: pd.DataFrame, ev: pd.DataFrame, t0: float) -> pd.DataFrame:
    """Add rtt_p50_ms, rtt_p99_ms, rtt_n (echo round trips per second: collateral latency)."""
    echo = ev.loc[(ev["event"] == "echo").to_numpy(), ["t", "rtt_ms"]].dropna()
    if echo.empty:
        return series
    s = np.floor(echo["t"].to_numpy(dtype=float) - t0).astype(np.int64)
    keep = (s >= 0) & (s < len(series))
    g = pd.Series(echo["rtt_ms"].to_numpy(dtype=float)[keep], index=s[keep]).groupby(level=0)
    out = series.copy()
    p50, p99, count = schemas.SERIES_LATENCY
    out[p50] = g.quantile(0.5).reindex(out.index)
    out[p99] = g.quantile(0.99).reindex(out.index)
    out[count] = g.size().reindex(out.index).fillna(0).astype(int)
    return out


# -- entry point -----------------------------------------------------------------


def load_run(folder: str | Path, parsing: columnar.Parsing | None = None) -> Run:
    """Load one run folder; UsageError if it is missing or holds nothing to analyse.  ``parsing``: its
    shards' parse, begun by :func:`.columnar.start` (closed here whatever happens)."""
    try:
        return _load_run(Path(folder), parsing)
    finally:
        if parsing is not None:
            parsing.close()


def _load_run(folder: Path, parsing: columnar.Parsing | None) -> Run:
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such run folder")
    warnings: list[str] = []
    counts: dict[str, int] = {}
    manifest: dict[str, Any] = {}
    mp = folder / names.MANIFEST
    if mp.exists():
        try:
            manifest = json.loads(mp.read_text(encoding="utf-8", errors="replace"))
            if not isinstance(manifest, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            warnings.append(f"manifest.json unreadable ({exc}); scenario and policy unknown")
            manifest = {}
    else:
        warnings.append("no manifest.json: scenario, policy and target are unknown")
    has_series = (folder / names.SERIES_CSV).exists()
    ev = load_events(folder, manifest, warnings, counts, parsing)
    if ev is None and not has_series:
        if names.event_shards(folder):
            raise UsageError(f"{folder}: its event shards hold no usable event: nothing to analyse")
        raise UsageError(f"{folder}: no events-*.jsonl or series.csv to analyse (is this a run folder?)")
    server, server_faults = (
        load_server(folder, warnings) if ev is not None or (folder / names.SERVER).exists() else (None, [])
    )
    faults = load_faults(folder, warnings)

    t0 = _num(manifest.get("started"))
    if ev is not None:
        first = float(ev["t"].iloc[0])
        if t0 is None or first < t0 - 1 or first > t0 + 86400:
            t0 = math.floor(first)
        last = float(ev["t"].iloc[-1])
        ended = _num(manifest.get("ended"))
        end_abs = max(last, ended) if ended and ended - last < 86400 else last
        end = end_abs - t0
        n_s = math.floor(end) + 1
        gated = ready_gated(manifest, ev)
        conns = build_conns(ev, end_abs, gated)
        attempts = attempt_outcomes(ev, conns, gated)
        series = series_from_events(ev, conns, attempts, t0, n_s)
        if server is not None:
            series = add_server_columns(series, server, t0)
        series = add_latency_columns(series, ev, t0)
        counts["attempts"] = len(attempts)
        counts["users"] = int(ev["user"].nunique())
        downtimes = None
    else:
        try:
            series = pd.read_csv(folder / names.SERIES_CSV)
        except (ValueError, OSError) as exc:
            raise UsageError(f"{folder / names.SERIES_CSV}: unreadable ({exc})") from None
        if "s" not in series or "connected" not in series:
            raise UsageError(f"{folder / names.SERIES_CSV}: needs columns s and connected")
        series = series.set_index("s").sort_index()
        series.index.name = "s"
        for c in ["attempts", *schemas.OUTCOME_COLUMNS]:
            if c not in series:
                series[c] = 0
        t0 = t0 or 0.0
        end = float(series.index.max() + 1) if len(series) else 0.0
        conns = attempts = None
        downtimes = None
        dp = folder / names.DOWNTIMES_CSV
        if dp.exists():
            try:
                downtimes = pd.read_csv(dp)["downtime_s"].to_numpy(dtype=float)
            except (ValueError, KeyError, OSError) as exc:
                warnings.append(f"downtimes.csv unreadable ({exc})")
    run = Run(
        path=folder,
        manifest=manifest,
        events=ev,
        conns=conns,
        server=server,
        disruptions=disruptions_of(faults, server_faults, t0),
        series=series,
        t0=t0,
        end=end,
        downtimes=downtimes,
        attempts=attempts,
        warnings=warnings,
        counts=counts,
    )
    return run
