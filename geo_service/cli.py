"""The `geo-service` command: a thin door onto the domain functions.

Each command parses its arguments, calls one domain function and renders the result. Errors
map to exit codes in one place (`EXIT_CODES`).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from sqlalchemy import Engine

from geo_service.errors import Conflict, GeoServiceError, InvalidInput, NotFound, Unavailable
from geo_service.settings import Settings, get_settings

EXIT_CODES: dict[type[GeoServiceError], int] = {
    InvalidInput: 3,
    NotFound: 4,
    Conflict: 5,
    Unavailable: 6,
}
DEMO_ORDER = ("communities", "grids", "workers", "buildings", "centers", "roads")
DEMO_FILES = {"workers": "workers.csv"}

app = typer.Typer(
    help="Grid management and 15-minute life-circle mapping on PostGIS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(
    help="The database: embedded cluster or GEO_DATABASE_URL.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
# Piped or redirected, output is not cut to 80 columns: lines run as long as they need.
# Markup off: codes, names and addresses from the data are printed as they are (a `[` in
# them is text); the few styled messages ask for markup and escape what they interpolate.
out = Console(soft_wrap=True, markup=False, width=None if sys.stdout.isatty() else 100_000)
err = Console(
    stderr=True, soft_wrap=True, markup=False, width=None if sys.stderr.isatty() else 100_000
)


class _State:
    """Settings built once per invocation; the engine made on first use."""

    def __init__(self) -> None:
        self.settings: Settings = get_settings()
        self._engine: Engine | None = None

    def engine(self) -> Engine:
        from geo_service.db.engine import connect

        if self._engine is None:
            from geo_service.db.engine import describe

            err.print(f"database: {describe(self.settings)}", style="dim", markup=False)
            self._engine = connect(self.settings)
        return self._engine


state: _State


@app.callback()
def _main() -> None:
    global state
    state = _State()


def run() -> None:
    """Entry point: run the app, mapping domain errors to messages and exit codes.

    The app runs with `standalone_mode=False` so that domain errors reach this function; the
    exit code a command raises (`typer.Exit(4)`) then comes back as the app's return value.
    """
    try:
        code = app(standalone_mode=False)
    except GeoServiceError as exc:
        err.print(f"[bold red]error:[/] {escape(exc.message)}", markup=True, highlight=False)
        sys.exit(_exit_code(exc))
    except ValidationError as exc:  # a GEO_ setting (environment or .env) that does not parse
        for problem in exc.errors(include_url=False, include_input=False):  # no passwords
            name = ".".join(str(part) for part in problem["loc"]) or exc.title
            said = f"setting {name} ({exc.title}): {problem['msg']}"
            err.print(f"[bold red]error:[/] {escape(said)}", markup=True, highlight=False)
        sys.exit(EXIT_CODES[InvalidInput])
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except _usage_errors() as exc:
        sys.exit(_show_usage_error(exc))
    sys.exit(code if isinstance(code, int) else 0)


def _usage_errors() -> tuple[type[Exception], ...]:
    """The exceptions of a command line that does not parse.

    typer 0.29 raises those of the click it bundles (`typer.TyperException` subclasses, with
    an exit code); older releases raised the click package's own. Both are caught, so a
    usage error is one line and exit 2 whichever typer a fresh install resolves.
    """
    try:
        import click
    except ImportError:
        return (typer.TyperException,)
    return (typer.TyperException, click.ClickException)


def _show_usage_error(exc: Exception) -> int:
    """Print a usage error as one line (a bare command group prints its help); its code."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # typer has printed the help already
        if help_text := exc.format_message():  # type: ignore[attr-defined]
            print(help_text)
        return 2
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    given = _value_given(getattr(exc, "param", None), sys.argv[1:])
    if given is not None and repr(given) not in message:
        message = f"{message} (given: {given!r})"
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    err.print(f"error: {message}{hint}", markup=False, highlight=False)
    return int(getattr(exc, "exit_code", 2))


def _value_given(param: Any, argv: list[str]) -> str | None:
    """What the user typed for an option the parser refused (its messages do not quote it)."""
    for opt in getattr(param, "opts", None) or ():
        if not opt.startswith("-"):
            continue
        for i, arg in enumerate(argv):
            if arg == opt and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(opt + "="):
                return arg[len(opt) + 1 :]
    return None


def _exit_code(exc: GeoServiceError) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


def _table(*headers: str, title: str | None = None) -> Table:
    """A table whose cells are never cut: a long code or name folds onto the next line."""
    table = Table(title=title)
    for header in headers:
        table.add_column(header, overflow="fold")
    return table


def _add(table: Table, *cells: object) -> None:
    """One row of plain text (a `[` in a name from the data is not rich markup)."""
    table.add_row(*(Text(str(cell)) for cell in cells))


def _print_json(data: Any) -> None:
    out.print_json(json.dumps(data, ensure_ascii=False, default=str))


@contextmanager
def _progress() -> Iterator[Callable[[str, int | None], Callable[[int], None]]]:
    """A rich progress bar factory for long operations (silent when not on a terminal)."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:

        def factory(label: str, total: int | None) -> Callable[[int], None]:
            task = bar.add_task(label, total=total)
            return lambda n: bar.advance(task, n)

        yield factory


# -- db ---------------------------------------------------------------------------------------
@db_app.command("start")
def db_start() -> None:
    """Start the embedded cluster (creating it the first time) and migrate the schema."""
    from geo_service.db.engine import database_url

    state.engine()
    out.print(f"database ready: {_safe_url(database_url(state.settings, start=False))}")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded cluster."""
    from geo_service.db.engine import cluster

    if not state.settings.database.embedded:
        raise InvalidInput("GEO_DATABASE_URL is set: that server is not ours to stop")
    cluster(state.settings).stop()
    out.print("embedded database stopped")


@db_app.command("status")
def db_status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Say which database is in use and whether it runs."""
    from geo_service.db.engine import cluster

    if not state.settings.database.embedded:
        info: dict[str, Any] = {"mode": "external", "url": _safe_url(state.settings.database.url)}
    else:
        status = cluster(state.settings).status()
        info = {"mode": "embedded", **asdict(status)}
        info["url"] = _safe_url(status.url) if status.url else None
    if state.settings.database.read_urls and info.get("running", True):
        info["standbys"] = _standby_states()
    if as_json:
        _print_json(info)
        return
    for key, value in info.items():
        if key != "standbys":
            out.print(f"{key:12} {value}")
    for standby in info.get("standbys", []):
        if standby["reading"]:
            said = f"serves reads (lag {standby['lag_s']} s)"
        else:
            said = f"skipped: it {standby['problem']}"
        out.print(f"{'standby':12} {standby['server']} {said}")
    if info.get("mode") == "embedded" and not info["running"]:
        raise typer.Exit(1)


def _standby_states() -> list[dict[str, Any]]:
    """What one look at each standby of GEO_DATABASE_READ_URLS finds (db status); Unavailable
    for one that is no standby of the primary, as `serve` says it."""
    from geo_service.db.engine import database_url, make_engine
    from geo_service.db.replicas import Standbys

    engine = make_engine(database_url(state.settings, start=False), pool_size=1)
    try:
        return Standbys.look(state.settings.database, engine).states()
    finally:
        engine.dispose()


@db_app.command("url")
def db_url() -> None:
    """Print the database URL in use (starting the embedded cluster if needed)."""
    from geo_service.db.engine import database_url

    print(database_url(state.settings))


@db_app.command("dump")
def db_dump(out_path: Annotated[Path, typer.Argument(metavar="OUT")]) -> None:
    """Back the database up to OUT (pg_dump custom format)."""
    from geo_service.db.backup import dump
    from geo_service.db.engine import database_url

    dump(database_url(state.settings), out_path)
    out.print(f"dumped to {out_path} ({out_path.stat().st_size:,} bytes)")


@db_app.command("restore")
def db_restore(in_path: Annotated[Path, typer.Argument(metavar="IN")]) -> None:
    """Replace the database's contents with a dump made by `db dump` (one transaction)."""
    from geo_service.db.backup import restore
    from geo_service.db.engine import database_url

    restore(database_url(state.settings), in_path)
    out.print(f"restored from {in_path}")


def _safe_url(url: str | None) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True) if url else ""


# -- users and tokens -------------------------------------------------------------------------
users_app = typer.Typer(help="API users: roles and bearer tokens.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("add")
def users_add_cmd(
    name: str,
    role: Annotated[
        str, typer.Option(help="admin, planner, dispatcher, worker (with --grid) or reporter")
    ],
    grid: Annotated[
        list[str] | None, typer.Option(help="a grid a worker answers for (repeatable)")
    ] = None,
    expires: Annotated[
        float | None, typer.Option(help="days until the token expires (0: never; default: setting)")
    ] = None,
) -> None:
    """Issue a token for NAME and print it once: only its hash is kept."""
    from geo_service.auth.service import add_user

    issued = add_user(state.engine(), state.settings, name, role, grid or [], expires)
    record = issued.record
    until = record["expires_at"].isoformat(timespec="seconds") if record["expires_at"] else "never"
    err.print(f"token for {name} ({role}), expires {until}; shown once, keep it safe:")
    print(issued.token)


@users_app.command("list")
def users_list_cmd(
    all_: Annotated[bool, typer.Option("--all", help="include revoked tokens")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The tokens issued (name, role, grids, token prefix, expiry, revocation)."""
    from geo_service.auth.service import list_users

    records = list_users(state.engine(), include_revoked=all_)
    if as_json:
        _print_json(records)
        return
    table = _table("name", "role", "grids", "token prefix", "created", "expires", "revoked")
    for r in records:
        _add(
            table,
            r["name"],
            r["role"],
            ",".join(r["grids"]),
            r["token_prefix"],
            f"{r['created_at']:%Y-%m-%d}",
            f"{r['expires_at']:%Y-%m-%d}" if r["expires_at"] else "never",
            f"{r['revoked_at']:%Y-%m-%d %H:%M}" if r["revoked_at"] else "",
        )
    out.print(table)


@users_app.command("revoke")
def users_revoke_cmd(
    name: str,
    token: Annotated[
        str | None, typer.Option(help="only the token starting with this prefix (see list)")
    ] = None,
) -> None:
    """Revoke NAME's tokens (servers refuse them within GEO_AUTH_CACHE_S seconds)."""
    from geo_service.auth.service import revoke_user

    count = revoke_user(state.engine(), name, token)
    out.print(f"revoked {count} token{'s' if count != 1 else ''} of {name}")


# -- import -----------------------------------------------------------------------------------
@app.command("import")
def import_cmd(
    kind: Annotated[
        str,
        typer.Argument(
            help="communities|grids|workers|buildings|centers|roads|osm "
            "(centres and streets are accepted too)"
        ),
    ],
    path: Annotated[Path, typer.Argument(help="shapefile, GeoPackage, GeoJSON or CSV")],
    crs: Annotated[
        str | None,
        typer.Option(
            help="CRS of the file when it has none (or to override it): EPSG:n, wgs84, cgcs2000"
        ),
    ] = None,
    encoding: Annotated[str | None, typer.Option(help="text encoding, e.g. gbk, utf-8")] = None,
    map_: Annotated[list[str] | None, typer.Option("--map", help="field=SOURCE_FIELD")] = None,
    replace: Annotated[
        bool, typer.Option(help="delete rows whose code is not in the file")
    ] = False,
    keep_going: Annotated[
        bool, typer.Option(help="import the good rows even if some are rejected")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="validate and count, change nothing")] = False,
    rejects: Annotated[
        Path | None,
        typer.Option(
            help="where to write rejected rows (CSV; for osm a folder); default: rejects/ in "
            "the data folder, "
            "and nowhere on --dry-run"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Import a file of one kind: all rows or none, idempotent by code.

    KIND osm reads an OpenStreetMap extract (.osm.pbf): its walkable ways become roads,
    and its buildings and community centres too unless --map buildings=no / centers=no."""
    from geo_service.ingest import ImportOptions, import_file
    from geo_service.ingest.kinds import KINDS, canonical_kind

    kind = canonical_kind(kind)
    if kind not in (*KINDS, "osm"):  # a usage error, before any database is touched
        raise typer.BadParameter(
            f"unknown import kind {kind!r}; expected one of: {', '.join(KINDS)}, osm",
            param_hint="KIND",
        )
    if kind == "osm":
        from geo_service.coverage.osm import import_osm

        reports = import_osm(
            state.engine(),
            state.settings,
            path,
            _parse_map(map_ or []),
            rejects_dir=rejects,  # a folder: one file per kind
        )
        for report in reports:
            _print_json(report.to_dict()) if as_json else _render_import(report)
        return

    options = ImportOptions(
        crs=crs,
        encoding=encoding,
        field_map=_parse_map(map_ or []),
        replace=replace,
        keep_going=keep_going,
        dry_run=dry_run,
        rejects_path=rejects,
    )
    with _progress() as progress:
        report = import_file(state.engine(), state.settings, kind, path, options, progress)
    if as_json:
        _print_json(report.to_dict())
    else:
        _render_import(report)
    _derived_after(kind, quiet=as_json)


def _derived_after(kind: str, *, quiet: bool = False) -> None:
    """Bring the data derived from an imported kind up to date (the address index, the
    streets' meeting points)."""
    if kind == "roads":
        from geo_service.buildings.service import refresh_crossings

        met = refresh_crossings(state.engine())
        if met is not None and not quiet:
            out.print(f"street crossings: {met:,} places where named streets meet")
        return
    if kind != "buildings":
        return
    from geo_service.buildings.service import refresh_address_index

    started = time.perf_counter()
    parsed = refresh_address_index(state.engine())
    if parsed and not quiet:
        took = time.perf_counter() - started
        out.print(f"address index: {parsed:,} addresses parsed in {took:.1f} s")


def _parse_map(items: list[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in items:
        name, sep, source = item.partition("=")
        if not sep or not name.strip() or not source.strip():
            raise InvalidInput(f"--map {item!r} is not of the form field=SOURCE_FIELD")
        mapping[name.strip()] = source.strip()
    return mapping


def _render_import(report: Any) -> None:
    verb = "would import" if not report.applied else "imported"
    out.print(
        f"{verb} {report.kind} from {escape(str(report.source))} "
        f"(CRS {escape(str(report.source_crs or '-'))}, "
        f"encoding {escape(str(report.encoding or 'auto'))}): "
        f"{report.read} read, [green]{report.inserted} inserted[/], "
        f"[yellow]{report.updated} updated[/], {report.unchanged} unchanged, "
        f"{report.deleted} deleted, {len(report.repaired)} repaired, "
        f"[red]{len(report.rejected)} rejected[/]",
        markup=True,
        highlight=False,
    )
    for issue in report.repaired[:10]:
        out.print(f"  repaired row {issue.row} ({issue.code}): {issue.reason}", highlight=False)
    for issue in report.rejected[:10]:
        out.print(f"  rejected row {issue.row} ({issue.code}): {issue.reason}", highlight=False)
    if report.rejects_file:
        out.print(f"  rejected rows written to {report.rejects_file}")


# -- qa -----------------------------------------------------------------------------------------
@app.command("qa")
def qa_cmd(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Check the grids: overlaps, gaps, grids outside their community, buildings in no grid."""
    from geo_service.grids.qa import grid_qa

    report = grid_qa(state.engine(), state.settings)
    if as_json:
        _print_json(report.to_dict())
        return
    table = _table(
        "community",
        "grids",
        "overlaps",
        "overlap m²",
        "gaps",
        "gap m²",
        "grids outside",
        "buildings in no grid",
        "grids without worker",
        title="Grid QA",
    )
    for c in report.communities:
        _add(
            table,
            f"{c.code} {c.name}",
            str(c.grids),
            str(len(c.overlaps)),
            f"{sum(o.area_m2 for o in c.overlaps):,.0f}",
            str(len(c.gaps)),
            f"{sum(g.area_m2 for g in c.gaps):,.0f}",
            str(len(c.outside)),
            str(c.buildings_outside),
            str(len(c.grids_without_worker)),
        )
    out.print(table)
    for c in report.communities:
        for o in c.overlaps:
            out.print(f"  overlap {o.grid_a} × {o.grid_b}: {o.area_m2:,.1f} m²")
        for g in c.gaps:
            out.print(f"  gap in {c.code} near {g.lon:.6f},{g.lat:.6f}: {g.area_m2:,.1f} m²")
        for x in c.outside:
            out.print(f"  grid {x.grid} lies {x.area_m2:,.1f} m² outside {c.code}")
        if c.grids_without_worker:
            out.print(f"  grids of {c.code} without a worker: {', '.join(c.grids_without_worker)}")
    out.print(f"buildings in no grid: {report.buildings_outside}")
    if not report.ok:
        raise typer.Exit(1)


# -- geocode -----------------------------------------------------------------------------------
@app.command("geocode")
def geocode_cmd(
    address: Annotated[str, typer.Argument(help="address text, e.g. 长江西路18号金山花园3栋")],
    limit: Annotated[int, typer.Option(min=1, max=50, help="candidates to show")] = 5,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Find the building (grid, community, workers) an address text names."""
    from geo_service.buildings.service import geocode

    answer = geocode(state.engine(), state.settings, address, limit)
    if as_json:
        _print_json(answer)
        return
    parsed = " ".join(f"{k}={v}" for k, v in answer["parsed"].items() if v)
    out.print(f"parsed: {parsed or '(nothing)'}")
    if not answer["candidates"]:
        out.print(answer.get("message", "no candidates"))
        raise typer.Exit(4)
    table = _table("confidence", "match", "building", "address", "grid", "community", "lon,lat")
    for c in answer["candidates"]:
        _add(
            table,
            f"{c['confidence']:.2f}",
            c["match_type"],
            _what_was_found(c),
            c["address"],
            c.get("grid_code") or "",
            c.get("community_name") or "",
            f"{c['lon']:.6f},{c['lat']:.6f}",
        )
    out.print(table)


def _what_was_found(candidate: dict[str, Any]) -> str:
    """The building code, or what else the candidate is: buildings behind a point, a place."""
    if candidate["building_code"]:
        return str(candidate["building_code"])
    if "buildings" in candidate:
        return f"({candidate['buildings']} buildings)"
    if candidate.get("place_kind"):
        return f"({candidate['place_kind']})"
    return f"({candidate['match_type']})"


# -- assign ------------------------------------------------------------------------------------
@app.command("assign")
def assign_cmd(
    source: Annotated[Path, typer.Argument(help="CSV with an id and coordinates per row")],
    output: Annotated[Path, typer.Option("-o", "--output", help="CSV to write")],
    crs: Annotated[str, typer.Option(help="wgs84|cgcs2000|gcj02|bd09|EPSG:n")] = "wgs84",
    id_field: Annotated[str, typer.Option()] = "id",
    lon_field: Annotated[str, typer.Option()] = "lon",
    lat_field: Annotated[str, typer.Option()] = "lat",
    chunk_bytes: Annotated[
        int | None,
        typer.Option(help="CSV bytes read, assigned and written at a time (8 MB; 16 kB least)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Assign every point of a CSV to its grid (locate rules), writing id, lon, lat, grid_code,
    community_code, status, distance_m, reason: one row per input row, in input order (a bad
    row comes out invalid, with the reason). The file is streamed: memory stays flat."""
    from geo_service.crs import parse_input_crs
    from geo_service.grids.assign import assign_csv

    input_crs = parse_input_crs(crs)
    with _progress() as progress:
        report = assign_csv(
            state.engine(),
            source,
            output,
            input_crs,
            state.settings.grids.locate_tolerance_m,
            id_field=id_field,
            lon_field=lon_field,
            lat_field=lat_field,
            chunk_bytes=chunk_bytes,
            progress=progress("rows assigned", None),
        )
    if as_json:
        _print_json(asdict(report))
        return
    counts = ", ".join(f"{k} {v:,}" for k, v in sorted(report.by_status.items()))
    out.print(f"assigned {report.rows:,} rows to grids ({counts}); wrote {report.output}")


# -- incidents ----------------------------------------------------------------------------------
incidents_app = typer.Typer(
    help="Incidents: supervision (督办) and statistics.", no_args_is_help=True
)
app.add_typer(incidents_app, name="incidents")


@incidents_app.command("overdue")
def incidents_overdue_cmd(
    limit: Annotated[int | None, typer.Option(help="at most this many")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Open incidents past their deadline, oldest deadline first (exit 1 when there are any)."""
    from geo_service.incidents.queries import overdue_incidents

    report = overdue_incidents(state.engine(), state.settings, limit=limit)
    if as_json:
        _print_json(report)
    else:
        table = _table("ref", "category", "grid", "due", "overdue h", "workers", title="Overdue")
        for item in report["items"]:
            workers = ", ".join(f"{w['name']} {w['phone'] or ''}" for w in item["workers"])
            _add(
                table,
                item["ref"],
                item["category"],
                item["grid_code"] or "-",
                item["due_at"],
                f"{item['overdue_hours']:.1f}",
                workers,
            )
        out.print(table)
    if report["count"]:
        raise typer.Exit(1)


@incidents_app.command("stats")
def incidents_stats_cmd(
    by: Annotated[str, typer.Option(help="grid or community")] = "grid",
    since: Annotated[str | None, typer.Option(help="received at or after (ISO 8601)")] = None,
    until: Annotated[str | None, typer.Option(help="received before (ISO 8601)")] = None,
    grids: Annotated[
        str, typer.Option(help="then (as routed) or today (where they happened, today's grids)")
    ] = "then",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Per grid or community: incidents, closures, on-time closure rate, overdue now."""
    from geo_service.incidents.queries import incident_stats

    report = incident_stats(state.engine(), state.settings, by, since, until, grids=grids)
    if as_json:
        _print_json(report)
        return
    table = _table(by, "name", "total", "closed", "on time", "overdue", title="Incidents")
    for group in report["groups"]:
        rate = group["on_time_rate"]
        _add(
            table,
            group["code"] or "(no grid)",
            group["name"] or "",
            str(group["total"]),
            str(group["closed"]),
            "-" if rate is None else f"{rate:.1%}",
            str(group["overdue"]),
        )
    out.print(table)


# -- grid edits and history ---------------------------------------------------------------------
grids_app = typer.Typer(
    help="Grid edits that keep the tiling (split, merge, redraw, create, retire, rename) and "
    "their history.",
    no_args_is_help=True,
)
app.add_typer(grids_app, name="grids")

_REASON = typer.Option("--reason", help="why the grids change (kept in the history)")
_ACTOR = typer.Option("--actor", help="who edits (default: your login name)")
_DRY_RUN = typer.Option("--dry-run", help="show what would change, store nothing")
_VERSION = typer.Option("--version", help="the grid's version you edited (older: refused)")
_CRS = typer.Option("--crs", help="CRS of the shape: wgs84, cgcs2000, gcj02, bd09 or EPSG:n")


def _shape_arg(value: str) -> Any:
    """A GeoJSON geometry given inline, or as the path of a .geojson/.json file (its first
    feature's geometry when it is a FeatureCollection)."""
    text = value
    if not value.lstrip().startswith("{"):
        path = Path(value)
        if not path.is_file():
            raise InvalidInput(f"{value!r} is neither GeoJSON nor a readable file")
        text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{value[:80]!r} is not GeoJSON: {exc.msg}") from None
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features") or []
        if len(features) != 1:
            raise InvalidInput(f"{value!r} holds {len(features)} features; give exactly one")
        data = features[0]
    return data


def _edit_by(actor: str | None, reason: str, dry_run: bool, versions: dict[str, int]) -> Any:
    import getpass

    from geo_service.grids.edits import EditBy

    return EditBy(actor or getpass.getuser(), reason, dry_run, versions)


def _render_edit(answer: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(answer)
        return
    head = "would" if answer["preview"] else f"edit #{answer['edit']}:"
    out.print(
        f"{head} {answer['kind']}: created {', '.join(answer['created']) or '-'}; "
        f"changed {', '.join(answer['changed']) or '-'}; retired "
        f"{', '.join(answer['retired']) or '-'}"
    )
    table = _table("grid", "name", "version", "area m²", "buildings", "households", "workers")
    for g in answer["grids"]:
        _add(
            table,
            g["code"],
            g["name"],
            str(g["version"]),
            f"{g['area_m2']:,.0f}",
            str(g["buildings"]),
            str(g["households"]),
            ", ".join(g["workers"]) or "-",
        )
    out.print(table)
    out.print(
        f"buildings that change grid: {answer['buildings_moved']} "
        f"({answer['households_moved']} households); open incidents moved: "
        f"{answer['incidents_moved']}"
    )
    for item in (*answer["findings"], *answer["warnings"]):
        out.print(f"  {item['kind']}: {item['message']}")


@grids_app.command("split")
def grids_split_cmd(
    code: Annotated[str, typer.Argument(help="the grid to split")],
    line: Annotated[str, typer.Option(help="GeoJSON LineString across the grid (or a file)")],
    reason: Annotated[str, _REASON],
    codes: Annotated[list[str] | None, typer.Option("--code", help="a new code per piece")] = None,
    names: Annotated[list[str] | None, typer.Option("--name", help="a name per piece")] = None,
    crs: Annotated[str | None, _CRS] = None,
    version: Annotated[int | None, _VERSION] = None,
    actor: Annotated[str | None, _ACTOR] = None,
    dry_run: Annotated[bool, _DRY_RUN] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Cut a grid along a line drawn across it, from boundary to boundary."""
    from geo_service.grids import edits

    by = _edit_by(actor, reason, dry_run, {code: version} if version else {})
    answer = edits.split(
        state.engine(), state.settings, code, _shape_arg(line), by, crs=crs,
        codes=codes or None, names=names or None,
    )  # fmt: skip
    _render_edit(answer, as_json)


@grids_app.command("merge")
def grids_merge_cmd(
    codes: Annotated[list[str], typer.Argument(help="two or more adjacent grids")],
    reason: Annotated[str, _REASON],
    code: Annotated[str | None, typer.Option(help="the merged grid's code")] = None,
    name: Annotated[str | None, typer.Option(help="the merged grid's name")] = None,
    actor: Annotated[str | None, _ACTOR] = None,
    dry_run: Annotated[bool, _DRY_RUN] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Join adjacent grids of one community into one."""
    from geo_service.grids import edits

    by = _edit_by(actor, reason, dry_run, {})
    _render_edit(
        edits.merge(state.engine(), state.settings, codes, by, code=code, name=name), as_json
    )


@grids_app.command("redraw")
def grids_redraw_cmd(
    code: Annotated[str, typer.Argument(help="the grid to redraw")],
    geometry: Annotated[str, typer.Option(help="GeoJSON Polygon (or a file)")],
    reason: Annotated[str, _REASON],
    neighbours: Annotated[str, typer.Option(help="adjust or strict")] = "adjust",
    crs: Annotated[str | None, _CRS] = None,
    version: Annotated[int | None, _VERSION] = None,
    actor: Annotated[str | None, _ACTOR] = None,
    dry_run: Annotated[bool, _DRY_RUN] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Give a grid a new shape; the touching grids adjust (or, strict, must not change)."""
    from geo_service.grids import edits

    by = _edit_by(actor, reason, dry_run, {code: version} if version else {})
    answer = edits.redraw(
        state.engine(), state.settings, code, _shape_arg(geometry), by,
        neighbours=neighbours, crs=crs,  # type: ignore[arg-type]
    )  # fmt: skip
    _render_edit(answer, as_json)


def _xy_arg(value: str, name: str) -> list[float]:
    """'x,y' (lon,lat in WGS-84 unless --crs says otherwise) as two finite numbers."""
    parts = value.split(",")
    try:
        xy = [float(p) for p in parts]
    except ValueError:
        xy = []
    if len(xy) != 2 or not all(math.isfinite(v) for v in xy):
        raise InvalidInput(f"{name} {value!r} is not 'x,y' (two numbers, e.g. 117.81,30.94)")
    return xy


@grids_app.command("move-vertex")
def grids_move_vertex_cmd(
    at: Annotated[str, typer.Option("--at", help="where the vertex is: 'lon,lat'")],
    to: Annotated[str, typer.Option("--to", help="where it goes: 'lon,lat'")],
    reason: Annotated[str, _REASON],
    crs: Annotated[str | None, _CRS] = None,
    actor: Annotated[str | None, _ACTOR] = None,
    dry_run: Annotated[bool, _DRY_RUN] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Move one vertex of the grid boundaries (within 10 cm of --at); every grid along the
    boundary follows, since a boundary between two grids is stored once."""
    from geo_service.grids import edits

    by = _edit_by(actor, reason, dry_run, {})
    answer = edits.move_vertex(
        state.engine(), state.settings, _xy_arg(at, "--at"), _xy_arg(to, "--to"), by, crs=crs
    )
    _render_edit(answer, as_json)


@grids_app.command("create")
def grids_create_cmd(
    community: Annotated[str, typer.Argument(help="the community of the new grid")],
    geometry: Annotated[str, typer.Option(help="GeoJSON Polygon (or a file)")],
    name: Annotated[str, typer.Option(help="the new grid's name")],
    reason: Annotated[str, _REASON],
    code: Annotated[str | None, typer.Option(help="default: the next free code")] = None,
    workers: Annotated[list[str] | None, typer.Option("--worker", help="its workers")] = None,
    crs: Annotated[str | None, _CRS] = None,
    actor: Annotated[str | None, _ACTOR] = None,
    dry_run: Annotated[bool, _DRY_RUN] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A new grid from area of its community that no grid holds."""
    from geo_service.grids import edits

    by = _edit_by(actor, reason, dry_run, {})
    answer = edits.create(
        state.engine(), state.settings, community, _shape_arg(geometry), by, name=name,
        code=code, crs=crs, workers=workers or (),
    )  # fmt: skip
    _render_edit(answer, as_json)


@grids_app.command("retire")
def grids_retire_cmd(
    code: Annotated[str, typer.Argument(help="the grid to retire")],
    to: Annotated[list[str], typer.Option("--to", help="a neighbour receiving its area")],
    reason: Annotated[str, _REASON],
    version: Annotated[int | None, _VERSION] = None,
    actor: Annotated[str | None, _ACTOR] = None,
    dry_run: Annotated[bool, _DRY_RUN] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """End a grid, handing its area and workers to the named neighbours."""
    from geo_service.grids import edits

    by = _edit_by(actor, reason, dry_run, {code: version} if version else {})
    _render_edit(edits.retire(state.engine(), state.settings, code, to, by), as_json)


@grids_app.command("rename")
def grids_rename_cmd(
    code: Annotated[str, typer.Argument(help="the grid")],
    reason: Annotated[str, _REASON],
    name: Annotated[str | None, typer.Option(help="its new name")] = None,
    new_code: Annotated[str | None, typer.Option("--code", help="its new code")] = None,
    version: Annotated[int | None, _VERSION] = None,
    actor: Annotated[str | None, _ACTOR] = None,
    dry_run: Annotated[bool, _DRY_RUN] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Rename a grid, or give it a new code (its history and lineage follow)."""
    from geo_service.grids import edits

    by = _edit_by(actor, reason, dry_run, {code: version} if version else {})
    answer = edits.rename(state.engine(), state.settings, code, by, name=name, new_code=new_code)
    _render_edit(answer, as_json)


@grids_app.command("history")
def grids_history_cmd(
    code: Annotated[str, typer.Argument(help="a grid code (today's or retired)")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every version of a grid: when, which edit, who and why, where it came from and went."""
    from geo_service.grids import edits

    answer = edits.history(state.engine(), code)
    if as_json:
        _print_json(answer)
        return
    table = _table(
        "version", "name", "from", "to", "made by", "reason", "ended by", "came from", "went to"
    )
    for v in answer["versions"]:
        made = f"#{v['edit_id']} {v['edit_kind']} ({v['edit_actor']})" if v["edit_id"] else "-"
        ended = f"#{v['ended_by']} {v['ended_kind']} ({v['ended_actor']})" if v["ended_by"] else "-"
        _add(
            table,
            str(v["version"]),
            v["name"],
            v["valid_from"].isoformat(timespec="seconds"),
            v["valid_to"].isoformat(timespec="seconds") if v["valid_to"] else "today",
            made,
            v["edit_reason"] or "-",
            ended,
            ", ".join(f"{x['code']} v{x['version']}" for x in v["came_from"]) or "-",
            ", ".join(f"{x['code']} v{x['version']}" for x in v["went_to"]) or "-",
        )
    out.print(table)


@grids_app.command("edits")
def grids_edits_cmd(
    since: Annotated[
        str | None, typer.Option(help="from this moment on (ISO 8601 with zone)")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The grid edits (and imports that changed grids), oldest first."""
    from geo_service.grids import edits

    answer = edits.edits(state.engine(), state.settings, since, limit)
    if as_json:
        _print_json(answer)
        return
    table = _table("edit", "kind", "at", "by", "reason", "what")
    for e in answer["items"]:
        what = ", ".join(
            f"{k} {v if not isinstance(v, list) else len(v)}" for k, v in e["summary"].items()
        )
        _add(
            table,
            f"#{e['id']}",
            e["kind"],
            e["at"].isoformat(timespec="seconds"),
            e["actor"],
            e["reason"],
            what,
        )
    out.print(table)


@grids_app.command("propose")
def grids_propose_cmd(
    community: Annotated[
        list[str] | None, typer.Option("--community", help="a community code (repeatable)")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="every community of the city")] = False,
    target: Annotated[
        int | None, typer.Option("--target-households", min=1, help="households a grid aims at")
    ] = None,
    minimum: Annotated[int | None, typer.Option("--min", min=1, help="fewest households")] = None,
    maximum: Annotated[int | None, typer.Option("--max", min=1, help="most households")] = None,
    stability: Annotated[
        float | None,
        typer.Option(min=0.0, help="weight of keeping today's grids' blocks together"),
    ] = None,
    method: Annotated[
        str | None, typer.Option(help="maxp (spopt max-p regions) or tree (gerrychain)")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="export the grids: .gpkg or .shp")
    ] = None,
    whole_area: Annotated[
        str | None,
        typer.Option(
            "--whole-area",
            metavar="CODE",
            help="a city with no communities: import one community CODE covering its streets "
            "and buildings first, and divide it",
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="the --whole-area community's name")] = None,
    actor: Annotated[str | None, _ACTOR] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Propose grids of a target size made of street blocks (stored; no grid changes)."""
    import getpass

    from geo_service.division import proposals

    if sum([bool(community), all_, whole_area is not None]) != 1:
        raise typer.BadParameter(
            "give --community CODE (one or more), --all or --whole-area CODE, only one of them"
        )
    chosen = [whole_area] if whole_area is not None else None if all_ else community
    request = proposals.Request(chosen, target, minimum, maximum, stability, method)
    request.options(state.settings)  # bad input refused before any work
    engine = state.engine()
    if whole_area is not None:
        made = proposals.whole_area(engine, state.settings, whole_area, name or whole_area)
        err.print(f"community {made['code']} ({made['name']}): {made['area_m2'] / 1e6:.2f} km²")
    proposal = proposals.start(engine, state.settings, request, actor or getpass.getuser())
    with _progress() as progress:
        step = progress("dividing communities", None)
        seen = [0]

        def advance(done: int, total: int) -> None:
            step(done - seen[0])
            seen[0] = done

        proposals.run(engine, state.settings, proposal, request, advance)
    answer = proposals.get(engine, proposal, with_grids=False)
    if output is not None:
        answer["exported"] = str(proposals.export(engine, proposal, output))
    if as_json:
        _print_json(answer)
        return
    _render_proposal(answer)


@grids_app.command("apply-proposal")
def grids_apply_proposal_cmd(
    proposal: Annotated[int, typer.Argument(min=1, help="the proposal's id")],
    reason: Annotated[str, _REASON],
    actor: Annotated[str | None, _ACTOR] = None,
    dry_run: Annotated[bool, _DRY_RUN] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Replace the grids of a proposal's communities by its grids, as one grid edit (refused
    when those grids changed since the proposal was made)."""
    from geo_service.grids import edits

    by = _edit_by(actor, reason, dry_run, {})
    answer = edits.apply_proposal(state.engine(), state.settings, proposal, by)
    _render_edit(answer, as_json)
    if not as_json and answer["workers_added"]:
        grids = {g for added in answer["workers_added"].values() for g in added}
        out.print(
            f"{len(answer['workers_added'])} workers serve {len(grids)} new grids as well "
            "(those of the grid each takes most households from)"
        )


def _render_proposal(answer: dict[str, Any]) -> None:
    p = answer["params"]
    out.print(
        f"proposal #{answer['id']} ({p['method']}, {p['min_households']}-"
        f"{p['max_households']} households, target {p['target_households']}, stability "
        f"{p['stability']}): {answer['seconds']} s"
    )
    rows = [
        ("grids", "grids"),
        ("households min / median / max", "households_min/households_median/households_max"),
        ("households CV", "households_cv"),
        ("grids outside the range", "outside_range"),
        ("Polsby-Popper mean / min", "polsby_popper_mean/polsby_popper_min"),
        ("boundary off streets (m)", "boundary_off_street_m"),
        ("households / buildings changing grid", "households_moved/buildings_moved"),
        ("workers needed", "workers_needed"),
    ]
    figures = answer["figures"]
    scopes = [("all", figures["all"])] if len(figures["communities"]) > 1 else []
    scopes += sorted(figures["communities"].items())
    for scope, f in scopes:
        table = _table("", "proposal", "today", title=scope)
        for label, names in rows:
            cells = [
                " / ".join(str(f[side][n]) for n in names.split("/"))
                for side in ("proposal", "today")
            ]
            _add(table, label, *cells)
        out.print(table)
    for n in answer["notes"]:
        out.print(f"  {n['community']}: {n['note']}")
    if answer.get("exported"):
        out.print(f"exported: {answer['exported']}")


# -- grid workers -------------------------------------------------------------------------------
workers_app = typer.Typer(
    help="Grid workers (网格员): who serves which grids, from when to when.",
    no_args_is_help=True,
)
app.add_typer(workers_app, name="workers")


def _render_worker(answer: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(answer)
        return
    left = f", left {answer['left_at'].isoformat(timespec='seconds')}" if answer["left_at"] else ""
    out.print(
        f"{answer['code']} {answer['name']} {answer['phone'] or ''}: serves "
        f"{', '.join(answer['grids']) or 'no grid'}{left}"
    )
    for a in answer.get("assignments", []):
        until = a["valid_to"].isoformat(timespec="seconds") if a["valid_to"] else "today"
        out.print(f"  {a['grid_code']}: {a['valid_from'].isoformat(timespec='seconds')} – {until}")
    for w in answer.get("warnings", []):
        out.print(f"  warning: {w['message']}")


@workers_app.command("list")
def workers_list_cmd(
    grid: Annotated[str | None, typer.Option(help="only the workers of this grid")] = None,
    community: Annotated[str | None, typer.Option(help="only this community's")] = None,
    as_of: Annotated[str | None, typer.Option(help="as of this moment (ISO 8601)")] = None,
    include_left: Annotated[bool, typer.Option(help="also workers who have left")] = False,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 1000,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Workers and the grids they serve."""
    from geo_service.grids import workers

    answer = workers.list_workers(
        state.engine(), state.settings, grid=grid, community=community, as_of=as_of,
        include_left=include_left, limit=limit,
    )  # fmt: skip
    if as_json:
        _print_json(answer)
        return
    table = _table("worker", "name", "phone", "grids", "left", title=f"{answer['total']} workers")
    for w in answer["items"]:
        left = w["left_at"].isoformat(timespec="seconds") if w["left_at"] else "-"
        _add(table, w["code"], w["name"], w["phone"] or "-", ", ".join(w["grids"]) or "-", left)
    out.print(table)


@workers_app.command("add")
def workers_add_cmd(
    code: Annotated[str, typer.Argument(help="the worker's code")],
    name: Annotated[str, typer.Option(help="the worker's name")],
    grids: Annotated[list[str], typer.Option("--grid", help="a grid they serve (first: home)")],
    phone: Annotated[str | None, typer.Option(help="the worker's phone")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A new worker serving one or more grids."""
    from geo_service.grids import workers

    _render_worker(workers.add_worker(state.engine(), code, name, phone, grids), as_json)


@workers_app.command("assign")
def workers_assign_cmd(
    code: Annotated[str, typer.Argument(help="the worker's code")],
    grids: Annotated[list[str], typer.Option("--grid", help="a grid they serve from now on")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The worker serves these grids too, from now on."""
    from geo_service.grids import workers

    _render_worker(workers.assign(state.engine(), code, grids), as_json)


@workers_app.command("unassign")
def workers_unassign_cmd(
    code: Annotated[str, typer.Argument(help="the worker's code")],
    grids: Annotated[list[str], typer.Option("--grid", help="a grid they stop serving")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The worker no longer serves these grids."""
    from geo_service.grids import workers

    _render_worker(workers.unassign(state.engine(), code, grids), as_json)


@workers_app.command("leave")
def workers_leave_cmd(
    code: Annotated[str, typer.Argument(help="the worker's code")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The worker leaves: every assignment ends now."""
    from geo_service.grids import workers

    _render_worker(workers.leave(state.engine(), code), as_json)


@app.command("workload")
def workers_workload_cmd(
    by: Annotated[str, typer.Option(help="grid or worker")] = "grid",
    community: Annotated[str | None, typer.Option(help="only this community")] = None,
    as_of: Annotated[str | None, typer.Option(help="grids and assignments of this moment")] = None,
    since: Annotated[str | None, typer.Option(help="incidents from (ISO 8601)")] = None,
    until: Annotated[str | None, typer.Option(help="incidents until (ISO 8601)")] = None,
    csv_out: Annotated[
        Path | None, typer.Option("--csv", help="write the rows as CSV here")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Workload per grid or per worker, and how unevenly it is spread."""
    from geo_service.grids.workload import to_csv, workload

    if by not in ("grid", "worker"):
        raise typer.BadParameter(f"{by!r}: expected grid or worker", param_hint="--by")
    answer = workload(
        state.engine(), state.settings, by="grid" if by == "grid" else "worker",
        community=community, as_of=as_of, since=since, until=until,
    )  # fmt: skip
    if csv_out is not None:
        csv_out.write_text(to_csv(answer), encoding="utf-8")
        err.print(f"{len(answer['items'])} rows written to {csv_out}")
    if as_json:
        _print_json(answer)
        return
    city = answer["city"]
    target = answer["target_households_per_worker"]
    out.print(
        f"{answer['measure']} per {by}: mean {city['mean']}, median {city['median']}, max "
        f"{city['max']}, coefficient of variation {city['cv']}, max/median "
        f"{city['max_over_median']} (standard {target} households per worker)"
    )
    if by == "grid":
        table = _table("grid", "name", "households", "workers", "per worker", "open", "overdue")
        for g in answer["items"]:
            per = "-" if g["households_per_worker"] is None else f"{g['households_per_worker']:g}"
            flag = " ▲" if g["over_target"] else ""
            _add(table, g["code"], g["name"], str(g["households"]), str(g["workers"]),
                 per + flag, str(g["open_incidents"]), str(g["overdue"]))  # fmt: skip
    else:
        table = _table("worker", "name", "grids", "households", "open", "overdue")
        for w in answer["items"]:
            _add(table, w["code"], w["name"] or "-", " ".join(w["grids"]), f"{w['households']:g}",
                 str(w["open_incidents"]), str(w["overdue"]))  # fmt: skip
    out.print(table)


# -- coverage (the 15-minute life circle) -------------------------------------------------------
coverage_app = typer.Typer(
    help="The 15-minute life circle: walking coverage of neighbourhood centres.",
    no_args_is_help=True,
)
app.add_typer(coverage_app, name="coverage")


@coverage_app.command("compute")
def coverage_compute_cmd(
    shapes: Annotated[bool, typer.Option(help="also draw isochrones, tiers and gaps")] = True,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recompute walking distances, figures, isochrones and gaps from the current data."""
    from geo_service.coverage.compute import compute

    report = compute(state.engine(), state.settings, shapes_too=shapes)
    if as_json:
        _print_json(report)
        return
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in report["timings"].items())
    out.print(
        f"coverage computed in {report['seconds']:.2f} s ({stages}): {report['buildings']:,} "
        f"buildings, {report['centers']} centres, network of {report['nodes']:,} nodes and "
        f"{report['edges']:,} edges; {report['covered_buildings']:,} buildings within the "
        f"widest tier",
        highlight=False,
    )
    if report["isolated_pieces"]:
        out.print(
            f"  {report['isolated_pieces']} isolated pieces of the street network are not routed "
            "on: `geo-service coverage report` lists them"
        )
    if report["buildings_without_street"]:
        out.print(
            f"  {report['buildings_without_street']:,} buildings have no street within "
            f"{state.settings.coverage.max_access_m:g} m (unreachable)"
        )
    for code in report["centers_without_street"]:
        out.print(f"  centre {code} has no street within reach: it covers nothing")


@coverage_app.command("report")
def coverage_report_cmd(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Buildings and households within each tier, city-wide and per community."""
    from geo_service.coverage.service import communities, summary

    city = summary(state.engine(), state.settings)
    per = communities(state.engine(), state.settings)
    if as_json:
        _print_json({**city, "communities": per["items"]})
        return
    if city["stale"]:
        stale = escape("; ".join(city["stale_because"]))
        err.print(f"[yellow]stale:[/] {stale}", markup=True, highlight=False)
    tiers = city["tiers_min"]
    table = _table(
        "community",
        "buildings",
        "households",
        *(f"≤{t} min hh" for t in tiers),
        f"≤{tiers[-1]} min %",
        "unreachable",
        title=f"15-minute life circle (computed {city['computed_at']})",
    )
    for row in [*per["items"], {"code": "city", "name": "", **city["city"]}]:
        last = row["tiers"][-1]
        share = last["household_share"]
        _add(
            table,
            f"{row['code'] or '(none)'} {row.get('name') or ''}",
            f"{row['buildings']:,}",
            f"{row['households']:,}",
            *(f"{t['households']:,}" for t in row["tiers"]),
            "-" if share is None else f"{share:.1%}",
            f"{row['unreachable_buildings']:,}",
        )
    out.print(table)
    for piece in city["isolated_pieces"]:
        out.print(
            f"  isolated piece {piece['component']}: {piece['edges']} edges, "
            f"{piece['length_m']:,.0f} m near {piece['lon']:.6f},{piece['lat']:.6f} "
            f"(street edges {', '.join(map(str, piece['street_edge_ids'][:5]))})",
            highlight=False,
        )


@coverage_app.command("export")
def coverage_export_cmd(
    output: Annotated[Path, typer.Argument(help="CSV to write")],
) -> None:
    """Write building_code, center_code, walk_m, minutes, tier_min for every building."""
    from geo_service.coverage.service import export_csv

    report = export_csv(state.engine(), state.settings, output)
    out.print(f"wrote {report['rows']:,} buildings to {report['output']}")
    if report["stale"]:
        err.print(
            "[yellow]stale:[/] data changed since the last compute", markup=True, highlight=False
        )


# -- the web map ------------------------------------------------------------------------------
map_app = typer.Typer(help="The web map (served at /map): static export.", no_args_is_help=True)
app.add_typer(map_app, name="map")


@map_app.command("export")
def map_export_cmd(
    output: Annotated[Path, typer.Argument(help="HTML file to write")],
    view: Annotated[str, typer.Option(help="planner or dispatcher")] = "planner",
    api: Annotated[
        str | None,
        typer.Option(help="a running server to read (http://host:port); default: in-process"),
    ] = None,
    token: Annotated[str | None, typer.Option(help="bearer token for --api")] = None,
    basemap: Annotated[
        str | None, typer.Option(help="osm, tianditu, amap or none (default: GEO_MAP_BASEMAP)")
    ] = None,
) -> None:
    """Write a self-contained HTML map (data embedded, JS/CSS inlined) to e-mail."""
    from web_map.export import export_html, http_fetch

    settings = state.settings
    chosen = basemap or settings.map.basemap
    if api:
        html = export_html(view, http_fetch(api, token), chosen, settings.map.tianditu_key)
    else:
        from geo_service.api.local import local_fetch

        with local_fetch(settings, state.engine()) as fetch:
            html = export_html(view, fetch, chosen, settings.map.tianditu_key)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(html, encoding="utf-8")
    out.print(f"wrote the {view} map ({len(html.encode()) / 1e6:.1f} MB) to {output}")


# -- synthetic data, demo, serve --------------------------------------------------------------
@app.command("synth")
def synth_cmd(
    folder: Annotated[Path, typer.Argument(help="where to write the shapefiles")],
    scale: Annotated[str, typer.Option(help="small, city, city3 or province")] = "small",
    seed: Annotated[int, typer.Option()] = 42,
) -> None:
    """Write a synthetic demo city (deterministic by seed) as shapefiles + workers.csv."""
    from geo_service.synth import SCALES, generate_city, write_city

    if scale not in SCALES:
        raise InvalidInput(f"unknown scale {scale!r}; expected one of: {', '.join(SCALES)}")
    paths = write_city(generate_city(scale, seed=seed), folder)
    out.print(f"wrote {len(paths)} files to {folder}")


def import_folder(folder: Path, *, replace: bool = False) -> None:
    """Import a folder laid out like shapefiles/demo, kind by kind, in dependency order."""
    from geo_service.ingest import ImportOptions, import_file

    for kind in DEMO_ORDER:
        path = folder / DEMO_FILES.get(kind, f"{kind}.shp")
        if not path.exists():
            continue
        with _progress() as progress:
            report = import_file(
                state.engine(), state.settings, kind, path, ImportOptions(replace=replace), progress
            )
        _render_import(report)
        _derived_after(kind)


@app.command("demo")
def demo_cmd(
    folder: Annotated[
        Path | None, typer.Option(help="data to import (default: the packaged demo city)")
    ] = None,
    serve: Annotated[bool, typer.Option(help="serve the API and map afterwards")] = True,
) -> None:
    """Start the database, import the demo city, print a demo admin token, and serve."""
    from geo_service.auth.service import add_user
    from geo_service.packaged import demo_dir

    folder = folder or demo_dir()
    import_folder(folder)
    if (folder / "roads.shp").exists():  # the life circle, for the planner map
        coverage_compute_cmd(shapes=True, as_json=False)
    issued = add_user(state.engine(), state.settings, "demo-admin", "admin", expires_days=1)
    base = f"http://{state.settings.server.host}:{state.settings.server.port}"
    out.print(f"demo admin token (valid one day): {issued.token}")
    out.print(f"  curl -H 'Authorization: Bearer {issued.token}' {base}/api/v1/incidents")
    access = f"access_token={issued.token}"
    out.print("map (the page passes its token on to the API):", highlight=False)
    out.print(f"  planner     {base}/map/planner?{access}", highlight=False)
    out.print(f"  grid worker {base}/map/worker?{access}", highlight=False)
    out.print(f"  dispatcher  {base}/map/dispatch?{access}", highlight=False)
    out.print(f"residents' grid notice (no token): {base}/find", highlight=False)
    # The phone page is a grid worker's day: a worker's token, for the first worker's grids.
    from geo_service.grids.workers import list_workers

    first = list_workers(state.engine(), state.settings, limit=1)["items"]
    if first and first[0]["grids"]:
        grids = list(first[0]["grids"])
        phone = add_user(
            state.engine(), state.settings, "demo-worker", "worker", grids, expires_days=1
        )
        out.print(
            f"grid worker's phone page ({first[0]['name']}, grids {', '.join(grids)}):",
            highlight=False,
        )
        out.print(f"  {base}/m/?access_token={phone.token}", highlight=False)
    if serve:
        serve_cmd()


# -- field work: door-to-door campaigns -----------------------------------------------------------
campaigns_app = typer.Typer(
    help="Door-to-door campaigns (入户走访): create, list, progress, export.",
    no_args_is_help=True,
)
app.add_typer(campaigns_app, name="campaigns")
_BY_OPTION = typer.Option(help="grid, community or worker")
_ROUND_OPTION = typer.Option("--round", min=1, help="one round (default: every round)")


@campaigns_app.command("add")
def campaigns_add_cmd(
    name: Annotated[str, typer.Argument(help="the campaign's name")],
    starts: Annotated[str, typer.Option(help="first day (ISO 8601 date or date-time)")],
    due: Annotated[str, typer.Option(help="last day (a date: the whole day counts)")],
    communities: Annotated[
        list[str] | None, typer.Option("--community", help="a community in scope")
    ] = None,
    grids: Annotated[list[str] | None, typer.Option("--grid", help="a grid in scope")] = None,
    kind: Annotated[str, typer.Option(help="screening, routine or other")] = "screening",
    target: Annotated[str, typer.Option(help="progress counts buildings or households")] = (
        "buildings"
    ),
    rounds: Annotated[int, typer.Option(help="rounds over every building (1-20)")] = 1,
    actor: Annotated[str | None, typer.Option(help="who creates it (default: you)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A campaign over whole communities (--community) or some grids (--grid)."""
    import getpass

    from geo_service.fieldwork.campaigns import create_campaign

    scope: dict[str, list[str]] = {}
    if communities:
        scope["communities"] = communities
    if grids:
        scope["grids"] = grids
    body = {"name": name, "kind": kind, "scope": scope, "target": target, "rounds": rounds,
            "starts": starts, "due": due}  # fmt: skip
    made = create_campaign(
        state.engine(), state.settings, body, created_by=actor or getpass.getuser()
    )
    if as_json:
        _print_json(made)
        return
    out.print(
        f"campaign {made['id']} {made['name']}: {made['buildings']} buildings, "
        f"{made['households']} households in {len(made['grids'])} grids, {made['rounds']} "
        f"round(s), {made['starts']} – {made['due']}"
    )


@campaigns_app.command("list")
def campaigns_list_cmd(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every campaign, newest first."""
    from geo_service.fieldwork.campaigns import list_campaigns

    answer = list_campaigns(state.engine(), state.settings)
    if as_json:
        _print_json(answer)
        return
    table = _table("id", "name", "kind", "target", "rounds", "buildings", "households", "visits",
                   "starts", "due", title=f"{answer['total']} campaigns")  # fmt: skip
    for c in answer["items"]:
        _add(table, c["id"], c["name"], c["kind"], c["target"], c["rounds"], c["buildings"],
             c["households"], c["visits"], c["starts"], c["due"])  # fmt: skip
    out.print(table)


def _campaign_progress(campaign: int, by: str, round_: int | None) -> dict[str, Any]:
    from typing import cast

    from geo_service.fieldwork.campaigns import progress
    from geo_service.fieldwork.rules import By

    if by not in ("grid", "community", "worker"):
        raise InvalidInput(f"--by {by!r}: expected grid, community or worker")
    return progress(state.engine(), state.settings, campaign, by=cast(By, by), round_=round_)


@campaigns_app.command("progress")
def campaigns_progress_cmd(
    campaign: Annotated[int, typer.Argument(help="the campaign's id")],
    by: Annotated[str, _BY_OPTION] = "grid",
    round_: Annotated[int | None, _ROUND_OPTION] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Done and remaining per grid, community or worker, and the city's."""
    answer = _campaign_progress(campaign, by, round_)
    if as_json:
        _print_json(answer)
        return
    city = answer["city"]
    which = f"round {answer['round']}" if answer["round"] else "every round"
    out.print(
        f"{answer['campaign']['name']}, {which}: {city['done']} of {city['in_scope']} "
        f"{answer['target']} done, {city['remaining']} remaining; {city['visits']} visits, "
        f"{city['revisits']} revisits, {city['flagged']} flagged"
    )
    table = _table(by, "name", "in scope", "done", "remaining", "share", "revisits", "flagged")
    for g in answer["items"]:
        share = "-" if g["share_done"] is None else f"{g['share_done']:.1%}"
        _add(table, g["code"] or "-", g["name"] or "-", g["in_scope"], g["done"],
             g["remaining"], share, g["revisits"], g["flagged"])  # fmt: skip
    out.print(table)


@campaigns_app.command("export")
def campaigns_export_cmd(
    campaign: Annotated[int, typer.Argument(help="the campaign's id")],
    output: Annotated[Path, typer.Argument(metavar="OUT.csv", help="where to write the CSV")],
    by: Annotated[str, _BY_OPTION] = "grid",
    round_: Annotated[int | None, _ROUND_OPTION] = None,
) -> None:
    """Progress as CSV: one row per grid, community or worker, then the city's."""
    from geo_service.fieldwork.campaigns import progress_csv

    answer = _campaign_progress(campaign, by, round_)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(progress_csv(answer), encoding="utf-8")
    out.print(f"{len(answer['items'])} rows (and the city's) written to {output}")


@app.command("serve")
def serve_cmd(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    workers: Annotated[
        int | None, typer.Option(help="server processes (default: GEO_WORKERS)")
    ] = None,
) -> None:
    """Serve the HTTP API (and the map) with uvicorn."""
    import uvicorn

    settings = state.settings
    engine = state.engine()  # start the database and migrate once, before any worker starts
    if settings.database.read_urls:  # a server that is no standby stops us here, not a worker
        from geo_service.db.replicas import Standbys

        for standby in Standbys.look(settings.database, engine).states():
            said = "serves reads" if standby["reading"] else f"skipped: it {standby['problem']}"
            out.print(f"standby {standby['server']} {said}")
    host, port = host or settings.server.host, port or settings.server.port
    workers = workers or settings.server.workers
    out.print(f"serving on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    # An import string and a factory: each worker process builds its own app, engine and pools
    # from the environment.
    uvicorn.run(
        "geo_service.api.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.server.log_level.lower(),
        log_config=None,  # the app's factory sets up JSON logs (no query strings, no bodies)
        access_log=False,
        backlog=settings.server.backlog,
        timeout_keep_alive=settings.server.keep_alive_s,
    )


if __name__ == "__main__":
    run()
