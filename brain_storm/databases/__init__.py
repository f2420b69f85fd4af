"""Database drivers, one per URL scheme, found by scheme.

A URL's scheme picks the driver:

1. a synonym is first mapped to its scheme through :data:`SYNONYMS`;
2. a module ``<scheme>_.py`` in this folder provides it — drop in a file to
   add a database;
3. otherwise an installed package may register it under the entry-point group
   ``brain_storm.databases`` (``scheme = "package.module:Class"``).

A driver class is either a :class:`~brain_storm.databases.base.Driver`, built
with ``from_url(url)``, or a plain class with ``__init__(self, host, port)``
and ``save(self, data, field)``, the original plugin contract, which is
wrapped in :class:`LegacyDriver`.  An unknown scheme fails with the list of
known ones; a driver whose optional package is missing fails with the extra
to install.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import json
import pkgutil
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from brain_storm.databases.base import Batch, Driver
from brain_storm.errors import (
    ConfigurationError,
    InvalidURLError,
    MissingDriverError,
    NotFoundError,
    TransientError,
    UnknownSchemeError,
    UnstorableError,
)
from brain_storm.messages import Message
from brain_storm.urls import mask_url, url_scheme

__all__ = ["Batch", "Driver", "LegacyDriver", "SYNONYMS", "connect", "known_schemes"]

ENTRY_POINT_GROUP = "brain_storm.databases"

SYNONYMS = {
    "postgres": "postgresql",
    "postgresql+psycopg": "postgresql",
    "mongodb+srv": "mongodb",
    "sqlite3": "sqlite",
}
"""Other spellings of a scheme, mapped to the scheme whose driver serves them."""

_EXTRAS = {"psycopg": "postgresql", "pymongo": "mongodb", "bson": "mongodb"}
"""The pip extra that brings each optional package a built-in driver needs."""


def connect(url: str) -> Driver:
    """Return a driver for ``url``; it connects on first use."""
    scheme = url_scheme(url)
    if not scheme:
        raise InvalidURLError(f"database URL {mask_url(url)!r} has no scheme://")
    driver_class = find_driver_class(scheme)
    if isinstance(driver_class, type) and issubclass(driver_class, Driver):
        return driver_class.from_url(url)
    return LegacyDriver(driver_class, url)


def find_driver_class(scheme: str) -> type:
    """The class that serves ``scheme`` (a synonym is resolved first)."""
    scheme = SYNONYMS.get(scheme, scheme)
    if scheme in _module_schemes():
        return _class_of(_import_driver_module(scheme))
    for entry_point in _entry_points():
        if entry_point.name == scheme:
            return entry_point.load()
    raise UnknownSchemeError(scheme, known_schemes())


def known_schemes() -> list[str]:
    """Every scheme a URL may use, synonyms included, sorted."""
    names = set(_module_schemes()) | {ep.name for ep in _entry_points()}
    names |= {alias for alias, target in SYNONYMS.items() if target in names}
    return sorted(names)


def _module_schemes() -> list[str]:
    return [
        info.name[:-1]
        for info in pkgutil.iter_modules(__path__)
        if info.name.endswith("_") and not info.name.startswith("_")
    ]


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _import_driver_module(scheme: str) -> ModuleType:
    try:
        return importlib.import_module(f"{__name__}.{scheme}_")
    except ModuleNotFoundError as error:
        missing = (error.name or "").split(".")[0]
        if missing in _EXTRAS:
            raise MissingDriverError(
                f"the {scheme} driver needs the {missing!r} package: "
                f"pip install 'brain-storm[{_EXTRAS[missing]}]'"
            ) from error
        raise MissingDriverError(
            f"the {scheme} driver needs the {missing!r} package, which is not "
            "installed"
        ) from error


def _class_of(module: ModuleType) -> type:
    """The one driver class a ``<scheme>_.py`` module defines."""
    classes = [
        value
        for value in vars(module).values()
        if inspect.isclass(value) and value.__module__ == module.__name__
    ]
    drivers = [cls for cls in classes if issubclass(cls, Driver)]
    candidates = drivers or [cls for cls in classes if hasattr(cls, "save")]
    if len(candidates) != 1:
        raise ConfigurationError(
            f"{module.__name__} must define exactly one driver class, found "
            f"{len(candidates)}"
        )
    return candidates[0]


class LegacyDriver(Driver):
    """Adapts a plain ``(host, port)`` class with ``save(data, field)``.

    Each message reaches ``save`` already validated, as the JSON text it
    arrived as, with its topic as ``field``; the batch is not atomic.  Reads
    are delegated when the class has the read methods, and refused otherwise.
    """

    def __init__(self, driver_class: type, url: str) -> None:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError as error:
            raise InvalidURLError(f"bad port in {mask_url(url)!r}") from error
        self.instance = driver_class(parts.hostname or "", port)
        self.name = driver_class.__name__

    @classmethod
    def from_url(cls, url: str) -> Driver:
        return connect(url)

    def save_messages(self, messages: list[Message]) -> None:
        for message in messages:
            data = message.raw
            if isinstance(data, (bytes, bytearray, memoryview)):
                data = bytes(data).decode("utf-8")
            elif isinstance(data, dict):
                data = json.dumps(data, ensure_ascii=False)
            try:
                self.instance.save(data, message.topic)
            except (OSError, TimeoutError) as error:
                raise TransientError(f"{self.name}.save failed: {error}") from error
            except Exception as error:
                raise UnstorableError(f"{self.name}.save refused: {error}") from error

    def save_batch(self, batch: Batch) -> None:
        raise ConfigurationError(f"{self.name} saves messages one at a time")

    def _read(self, name: str, *args: Any) -> Any:
        method = getattr(self.instance, name, None)
        if method is None:
            raise ConfigurationError(f"{self.name} cannot read: it has no {name}()")
        result = method(*args)
        if result is None:
            raise NotFoundError(f"{name}{args} found nothing")
        return result

    def get_users(self) -> list[dict[str, Any]]:
        return self._read("get_users")

    def get_one_user(self, user_id: int) -> dict[str, Any]:
        return self._read("get_one_user", user_id)

    def get_snapshots(self, user_id: int) -> list[dict[str, Any]]:
        return self._read("get_snapshots", user_id)

    def get_one_snapshot(self, user_id: int, snapshot_id: int) -> dict[str, Any]:
        return self._read("get_one_snapshot", user_id, snapshot_id)

    def get_result(self, user_id: int, snapshot_id: int, result_name: str) -> Any:
        return self._read("get_result", user_id, snapshot_id, result_name)

    def close(self) -> None:
        close = getattr(self.instance, "close", None)
        if close is not None:
            close()
