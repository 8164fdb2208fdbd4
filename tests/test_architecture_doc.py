"""docs/architecture.md is the map of the code: it names every module, and points nowhere outside the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"


def modules() -> list[Path]:
    return sorted(p.relative_to(ROOT) for base in ("wsstorm", "analysis") for p in (ROOT / base).rglob("*.py"))


def test_every_module_is_on_the_map_and_has_a_docstring():
    text = DOC.read_text(encoding="utf-8")
    missing = [str(m) for m in modules() if f"`{m}`" not in text and m.name != "__main__.py"]
    assert not missing, f"docs/architecture.md does not name: {missing}"
    undocumented = [str(m) for m in modules() if not ast.get_docstring(ast.parse((ROOT / m).read_text()))]
    assert not undocumented, undocumented


def test_the_map_points_only_inside_the_repository():
    for doc in (DOC, ROOT / "docs" / "contracts.md", ROOT / "CONTRIBUTING.md", ROOT / "README.md"):
        text = doc.read_text(encoding="utf-8")
        assert "../shared" not in text and "design.md" not in text, doc
        for target in re.findall(r"`((?:docs|wsstorm|analysis|tests|benchmarks)/[^`*<> ]+)`", text):
            assert (ROOT / target.rstrip("/")).exists(), f"{doc.name} names {target}, which does not exist"
