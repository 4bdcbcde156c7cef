"""Presets: named sets of upload options kept in the job database, so the web UI, the API,
``bgremover remove --preset`` and ``bgremover watch --preset`` all read the same ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as Db
from sqlalchemy.orm import sessionmaker

from ..config import Settings
from .database import connect, default_url, migrate, session_factory

# The options themselves live apart from the database layer, which `bgremover remove`
# without --preset never loads; re-exported for the store's callers.
from .preset_options import NAME_RULE as NAME_RULE
from .preset_options import Preset as Preset
from .preset_options import PresetName as PresetName
from .preset_options import PresetOptions as PresetOptions
from .states import NotFound
from .tables import PresetRow

NAMES_SHOWN = 20
"""How many saved names a message lists at most (then "and N more")."""


def saved_names(names: list[str], total: int) -> str:
    """``names`` (the first ``NAMES_SHOWN`` of ``total``) for a message: short however many
    presets there are."""
    if not names:
        return "none are saved yet"
    shown = names[:NAMES_SHOWN]
    more = total - len(shown)
    return ", ".join(shown) + (f", and {more} more" if more > 0 else "")


class UnknownPreset(NotFound):
    """No preset of that name; the message lists (some of) those that exist."""

    def __init__(self, name: str, listed: str) -> None:
        super().__init__("preset", name)
        self.args = (f"no preset named {name!r} (saved presets: {listed})",)


class TooManyPresets(Exception):
    """Saving a new preset would pass ``max_presets`` (HTTP 409)."""

    def __init__(self, name: str, limit: int) -> None:
        super().__init__(
            f"cannot save preset {name!r}: {limit} presets are saved, the most this server "
            "keeps; delete one, replace one of the same name, or raise BGREMOVER_MAX_PRESETS"
        )


class PresetStore:
    """Presets in the job database; any number of processes may share it, at most ``limit``
    of them (concurrent first saves in several processes may pass it by one each)."""

    def __init__(self, transactions: sessionmaker[Db], limit: int) -> None:
        self._transactions = transactions
        self._limit = limit

    def list(self) -> list[Preset]:
        with self._transactions() as db:
            rows = db.scalars(select(PresetRow).order_by(PresetRow.name)).all()
            return [_preset(row) for row in rows]

    def get(self, name: str) -> Preset:
        """The preset called ``name``; ``UnknownPreset`` (a 404) when there is none."""
        with self._transactions() as db:
            row = db.get(PresetRow, name)
            if row is None:
                raise UnknownPreset(name, self._listed(db))
            return _preset(row)

    def save(self, preset: Preset) -> bool:
        """Create or replace the preset of that name; True when it is new."""
        options = preset.model_dump(mode="json", exclude={"name"})
        now = datetime.now(UTC)
        for _ in range(2):  # a concurrent first save of the same name wins the insert
            try:
                with self._transactions.begin() as db:
                    row = db.get(PresetRow, preset.name)
                    if row is not None:
                        row.options, row.updated_at = options, now
                        return False
                    if _count(db) >= self._limit:
                        raise TooManyPresets(preset.name, self._limit)
                    db.add(PresetRow(name=preset.name, options=options, created_at=now,
                                     updated_at=now))  # fmt: skip
                    return True
            except IntegrityError:
                continue
        raise RuntimeError(f"preset {preset.name!r} could not be saved")

    def delete(self, name: str) -> None:
        with self._transactions.begin() as db:
            deleted = db.execute(delete(PresetRow).where(PresetRow.name == name))
            if deleted.rowcount:  # type: ignore[attr-defined]
                return
            raise UnknownPreset(name, self._listed(db))

    @staticmethod
    def _listed(db: Db) -> str:
        names = db.scalars(select(PresetRow.name).order_by(PresetRow.name).limit(NAMES_SHOWN))
        return saved_names(list(names), _count(db))


def _count(db: Db) -> int:
    return db.scalar(select(func.count()).select_from(PresetRow)) or 0


def _preset(row: PresetRow) -> Preset:
    return Preset(name=row.name, **row.options)


@contextmanager
def open_presets(settings: Settings) -> Iterator[PresetStore]:
    """The presets of the database ``settings`` name (the one ``bgremover serve`` uses), for
    commands that run no job system of their own."""
    engine = connect(settings.database_url or default_url(settings.data_dir))
    try:
        migrate(engine)
        yield PresetStore(session_factory(engine), settings.max_presets)
    finally:
        engine.dispose()
