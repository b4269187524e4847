"""shapefiles/SCHEMA.md documents every field of every import kind."""

from __future__ import annotations

import re

import pytest

from geo_service.ingest.kinds import KINDS
from tests.conftest import ROOT

DOC = (ROOT / "shapefiles" / "SCHEMA.md").read_text()


def _documented() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    kind = ""
    for line in DOC.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 6 or not cells[2].startswith("`"):
            continue
        kind = cells[0] or kind
        found.setdefault(kind, set()).add(cells[2].strip("`"))
    return found


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_schema_doc_lists_every_field(kind: str):
    spec = KINDS[kind]
    assert _documented().get(kind) == set(spec.field_names)
    assert all(len(name) <= 10 and re.fullmatch(r"[a-z_]+", name) for name in spec.field_names)
