"""Grid routes."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from geo_service.api.deps import EngineDep, SettingsDep
from geo_service.grids.qa import grid_qa

router = APIRouter(prefix="/api/v1", tags=["grids"])


@router.get("/qa")
async def qa(engine: EngineDep, settings: SettingsDep) -> dict[str, object]:
    """Grid QA: overlaps, gaps, grids outside their community, buildings in no grid."""
    report = await run_in_threadpool(grid_qa, engine, settings)
    return report.to_dict()
