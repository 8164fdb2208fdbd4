"""The run folder: the one home of its file names, its versioned schemas and its JSON Lines reading.

Everything that writes or reads ``reports/<run-id>/`` (the load side, the target, the runner,
the simulator and analysis) takes names from :mod:`.names`, shapes from :mod:`.schemas` and
parsing from :mod:`.jsonl`. ``names``, ``schemas`` and ``jsonl`` are pure (stdlib, orjson);
:mod:`.manifest` writes ``manifest.json``. Imports nothing else of wsstorm but ``wsstorm.errors``.
"""

from wsstorm.runfolder import names, schemas
from wsstorm.runfolder.jsonl import Tail, jsonable, read_jsonl, records

__all__ = ["Tail", "jsonable", "names", "read_jsonl", "records", "schemas"]
