"""Request dependencies: the running job system, and shared paging models."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Query, Request
from pydantic import BaseModel

from ..config import Settings
from ..jobs.bus.base import EventBus
from ..jobs.contract import JobStore
from ..jobs.presets import PresetStore
from ..system import JobSystem

T = TypeVar("T")


def get_system(request: Request) -> JobSystem:
    system: JobSystem = request.app.state.system
    return system


def get_service(request: Request) -> JobStore:
    return get_system(request).service


def get_bus(request: Request) -> EventBus:
    return get_system(request).bus


def get_presets(request: Request) -> PresetStore:
    return get_system(request).presets


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


Service = Annotated[JobStore, Depends(get_service)]
Bus = Annotated[EventBus, Depends(get_bus)]
Presets = Annotated[PresetStore, Depends(get_presets)]
AppSettings = Annotated[Settings, Depends(get_settings)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Items to skip")]


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int
