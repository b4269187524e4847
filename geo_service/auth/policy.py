"""Who may do what (pure): the permission table as data, and the finer rules on top of it.

The table names endpoint groups (permissions) and the roles allowed each. A request is
allowed when its caller's role is in the row of the route's permission. Finer rules: a grid
worker reads and acts on the incidents of their own grids only, and only starts and reports
work; anyone may see a layer listed for `anonymous`; free text written by residents is shown
only to callers who may read that incident.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

Role = Literal["admin", "planner", "dispatcher", "worker", "reporter", "anonymous"]
ROLES: Final[tuple[Role, ...]] = (
    "admin",
    "planner",
    "dispatcher",
    "worker",
    "reporter",
    "anonymous",
)
# Personal data, by column name. The reporter's contact is shown only in an incident's case
# file, to callers who may read the incident; no layer anonymous callers may see can expose
# any of PERSONAL_COLUMNS, under any field name (the layer catalogue refuses it).
REPORTER_CONTACT: Final = ("reporter_name", "reporter_phone", "reporter_email")
PERSONAL_COLUMNS: Final = frozenset(
    {
        *REPORTER_CONTACT,
        "phone",
        "email",
        "description",
        "note",
        "address_text",
        "media_url",
        "input_lon",
        "input_lat",
        "idempotency_key",
    }
)
# Roles a token can carry (anonymous is the absence of one).
TOKEN_ROLES: Final = ROLES[:-1]
_EVERYONE: Final = frozenset(ROLES)
_STAFF: Final = frozenset({"admin", "planner", "dispatcher", "worker"})

# The permission table: endpoint group -> roles allowed. The README shows it; the tests check
# every cell of it.
PERMISSIONS: Final[Mapping[str, frozenset[str]]] = {
    "health": _EVERYONE,  # GET /healthz, /readyz, /livez
    "map": _EVERYONE,  # GET /map pages (the data they load is checked on its own routes)
    "layers": _EVERYONE,  # /ogc, /tiles: only the layers whose `roles` admit the caller
    "open311.read": _EVERYONE,  # GET services, requests (free text only to incident readers)
    "incidents.categories": _EVERYONE,  # GET /api/v1/incidents/categories
    "public": _EVERYONE,  # GET /api/v1/public/grid: the grid notice, rate-limited
    "open311.submit": frozenset({"admin", "dispatcher", "worker", "reporter"}),  # api_key
    "incidents.report": frozenset({"admin", "dispatcher", "worker", "reporter"}),
    "incidents.read": frozenset({"admin", "dispatcher", "worker"}),  # workers: own grids
    "incidents.act": frozenset({"admin", "dispatcher", "worker"}),  # workers: own grids
    "incidents.stats": frozenset({"admin", "planner", "dispatcher"}),
    "locate": _STAFF,  # answers carry grid workers' names and phones
    "buildings": _STAFF,  # geocode, reverse, buildings
    "qa": frozenset({"admin", "planner"}),
    "grids.read": _STAFF,  # grid detail, history, edits; workers, assignments; workload
    "grids.edit": frozenset({"admin", "planner"}),  # grid edits; adding and assigning workers
    "coverage": frozenset({"admin", "planner"}),
    "campaigns.read": _STAFF,  # campaigns, progress, routes, visits; workers: own grids
    "campaigns.edit": frozenset({"admin", "planner"}),  # create a campaign
    "visits.record": frozenset({"admin", "dispatcher", "worker"}),  # workers: own grids
    "metrics": frozenset({"admin"}),
}

# Workflow actions a role may take (roles with incidents.act and no entry here: every action).
ACTIONS: Final[Mapping[str, frozenset[str]]] = {
    "worker": frozenset({"start", "report"}),
}


@dataclass(frozen=True)
class Principal:
    """The caller of a request: a token's name, role and grid scope, or anonymous."""

    name: str
    role: Role
    grids: frozenset[str] = field(default_factory=frozenset)

    @property
    def scoped(self) -> bool:
        """True when the caller sees only the incidents of their grids (grid workers)."""
        return self.role == "worker"


ANONYMOUS: Final = Principal("anonymous", "anonymous")


def allowed(principal: Principal, permission: str) -> bool:
    """Whether the table lets the caller's role use the endpoint group `permission`."""
    return principal.role in PERMISSIONS[permission]


def may_take(principal: Principal, action: str) -> bool:
    """Whether the caller may apply the workflow action (given incidents.act)."""
    limited = ACTIONS.get(principal.role)
    return limited is None or action in limited


def sees_incident(principal: Principal, grid_code: str | None) -> bool:
    """Whether the caller may read the incident (its reporter and free text) of that grid."""
    if not allowed(principal, "incidents.read"):
        return False
    return not principal.scoped or (grid_code is not None and grid_code in principal.grids)


def grid_scope(principal: Principal) -> list[str] | None:
    """The grids a listing is restricted to (None: no restriction)."""
    return sorted(principal.grids) if principal.scoped else None


def sees_layer(principal: Principal, layer_roles: Iterable[str]) -> bool:
    """A layer is visible to the roles it lists; one listing `anonymous` is public."""
    roles = set(layer_roles)
    return "anonymous" in roles or principal.role in roles
