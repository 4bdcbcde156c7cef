"""/api/presets: named sets of upload options, shared by every client of this database."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from ..jobs.presets import Preset, TooManyPresets
from .deps import AppSettings, Presets
from .errors import ApiError
from .uploads import check_model

router = APIRouter(prefix="/api/presets", tags=["presets"])


@router.get("", response_model=list[Preset])
def list_presets(presets: Presets) -> list[Preset]:
    return presets.list()


REPLACED: dict[int | str, dict[str, Any]] = {
    200: {"description": "An existing preset of that name was replaced"},
    409: {"description": "As many presets as BGREMOVER_MAX_PRESETS are saved already"},
}


@router.post("", status_code=201, response_model=Preset, responses=REPLACED)
def save_preset(
    preset: Preset, presets: Presets, settings: AppSettings, response: Response
) -> Preset:
    """Create the preset, or replace the one of the same name (then 200); a ``model`` must
    be one of this server's (``GET /api/models``)."""
    if preset.model is not None:
        check_model(settings, preset.model)
    try:
        created = presets.save(preset)
    except TooManyPresets as exc:
        raise ApiError(409, "too_many_presets", str(exc)) from None
    if not created:
        response.status_code = 200
    return preset


@router.delete("/{name}", status_code=204, response_class=Response)
def delete_preset(name: str, presets: Presets) -> Response:
    presets.delete(name)
    return Response(status_code=204)
