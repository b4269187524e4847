"""The import operation: read -> validate -> stage -> check references -> upsert, in one
transaction. The CLI and the API both call `import_file`."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import shapely
from sqlalchemy import Engine

from geo_service.errors import InvalidInput
from geo_service.grids import edits_store, topology_store
from geo_service.ingest import store
from geo_service.ingest.kinds import kind_spec
from geo_service.ingest.read import read_source
from geo_service.ingest.validate import Issue, validate
from geo_service.settings import Settings

ProgressFactory = Callable[[str, int | None], Callable[[int], None]]


@dataclass
class ImportOptions:
    """How to read and apply one file."""

    crs: str | None = None
    encoding: str | None = None
    field_map: dict[str, str] = field(default_factory=dict)
    replace: bool = False
    keep_going: bool = False  # store the good rows even when some are rejected
    dry_run: bool = False
    rejects_path: Path | None = None


@dataclass
class ImportReport:
    """What an import did (or, when it failed, would have done)."""

    kind: str
    source: str
    source_crs: str | None
    encoding: str | None
    read: int
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    repaired: list[Issue] = field(default_factory=list)
    rejected: list[Issue] = field(default_factory=list)
    rejects_file: str | None = None
    applied: bool = False

    @property
    def changed(self) -> int:
        """Rows inserted, updated or deleted."""
        return self.inserted + self.updated + self.deleted

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {**asdict(self), "changed": self.changed}


class ImportRejected(InvalidInput):
    """Some rows were rejected and --keep-going was not given: nothing was stored."""

    def __init__(self, report: ImportReport) -> None:
        first = report.rejected[0]
        super().__init__(
            f"{len(report.rejected)} of {report.read} rows of {Path(report.source).name} "
            f"rejected, nothing imported (first: row {first.row}"
            f"{f' code {first.code!r}' if first.code else ''}: {first.reason}); "
            + (f"all reasons in {report.rejects_file}; " if report.rejects_file else "")
            + "fix the file, or pass --keep-going to import the other rows",
            details=report.to_dict(),
        )
        self.report = report


def import_file(
    engine: Engine,
    settings: Settings,
    kind: str,
    path: Path,
    options: ImportOptions | None = None,
    progress: ProgressFactory | None = None,
) -> ImportReport:
    """Import one file of `kind` into the database, all rows or none."""
    opts = options or ImportOptions()
    spec = kind_spec(kind)
    source = read_source(path, spec, crs=opts.crs, encoding=opts.encoding, field_map=opts.field_map)
    pattern = (
        getattr(settings.grids, spec.code_pattern_setting) if spec.code_pattern_setting else None
    )
    checked = validate(source.frame, spec, code_pattern=pattern)
    report = ImportReport(
        kind=spec.name,
        source=str(path),
        source_crs=source.source_crs,
        encoding=source.encoding,
        read=len(source.frame),
        repaired=checked.repaired,
        rejected=checked.rejected,
    )
    with engine.begin() as conn:
        store.lock_kind(conn, spec.name)
        # grids keep their history: an import that changes them is an edit too
        edit = (
            edits_store.begin_edit(conn, "import", "import", f"import of {path.name}")
            if spec.name == "grids"
            else None
        )
        tick = progress("loading", len(checked.rows)) if progress else None
        if not report.rejected and store.load_into_empty(conn, spec, checked.rows, tick):
            counts = store.Counts(inserted=len(checked.rows))
        else:
            store.stage(conn, spec, checked.rows, tick)
            unknown = store.unknown_references(conn, spec)
            if unknown:
                report.rejected = sorted(
                    report.rejected
                    + [Issue(row, code, "rejected", why) for row, code, why in unknown],
                    key=lambda i: i.row,
                )
                store.drop_staged(conn, [row for row, _, _ in unknown])
            if report.rejected:
                out = _rejects_path(settings, spec.name, path, opts)
                if out is not None:
                    report.rejects_file = str(_write_rejects(report.rejected, source.frame, out))
                if not opts.keep_going:
                    raise ImportRejected(report)  # rolls the transaction back
            counts = store.upsert(
                conn, spec, replace=opts.replace, tolerance_deg=settings.grids.import_tolerance_deg
            )
        report.inserted, report.updated = counts.inserted, counts.updated
        report.unchanged, report.deleted = counts.unchanged, counts.deleted
        if edit is not None:
            # the grids' shared boundaries, stored once (PostGIS Topology)
            topo_tick = progress("topology", counts.inserted + counts.updated) if progress else None
            topology_store.sync(
                conn,
                settings.grids.import_tolerance_deg,
                settings.grids.qa_min_area_m2,
                topo_tick,
            )
            edits_store.end_import(conn, edit, counts.inserted, counts.updated, counts.deleted)
        if opts.dry_run:
            conn.rollback()
            return report
        store.record_run(conn, spec, str(path), counts, len(report.repaired), len(report.rejected))
    report.applied = True
    return report


def _rejects_path(settings: Settings, kind: str, path: Path, opts: ImportOptions) -> Path | None:
    """Where rejected rows go: --rejects; else, unless this is a dry run (which writes
    nothing), `rejects/` in the data folder, never the folder the user happens to stand in."""
    if opts.rejects_path is not None:
        return opts.rejects_path
    if opts.dry_run:
        return None
    return settings.database.data_dir / "rejects" / f"{path.stem}.{kind}.rejects.csv"


def _write_rejects(rejected: list[Issue], frame: pd.DataFrame, out: Path) -> Path:
    """Rejected rows with their reasons and original values (geometry as WKT), as CSV, so
    nothing the user gave is silently lost."""
    attrs = [c for c in frame.columns if c not in ("_problem", "geometry")]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["row", "reason", *attrs, *(["wkt"] if "geometry" in frame else [])])
        for issue in rejected:
            values = frame.loc[issue.row]
            geom = [shapely.to_wkt(values["geometry"])] if "geometry" in frame else []
            writer.writerow([issue.row, issue.reason, *(values[a] for a in attrs), *geom])
    return out
