"""Fixtures: real servers for the whole run, a fresh database for each test.

PostgreSQL and RabbitMQ are Debian's; the MongoDB stand-in is SecantusDB
(no MongoDB server can run on these machines).  Each server is started once
per test session in a folder of its own and listens on 127.0.0.1 only.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from servers import MongoServer, PostgresServer, RabbitMQServer  # noqa: E402

BACKENDS = ["sqlite", "postgresql", "mongodb"]
_names = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.stop()
    server.remove()


@pytest.fixture(scope="session")
def mongo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    server = MongoServer(tmp_path_factory.mktemp("mongo"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQServer]:
    server = RabbitMQServer(tmp_path_factory.mktemp("rabbitmq"))
    server.start()
    yield server
    server.stop()


def _unique(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{next(_names)}"


@pytest.fixture
def database_url_for(
    request: pytest.FixtureRequest, tmp_path: Path
) -> object:
    """Make a fresh, empty database of a backend and return its URL."""

    def make(backend: str) -> str:
        name = _unique("bs")
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / (name + '.sqlite3')}"
        if backend == "postgresql":
            server = request.getfixturevalue("postgres")
            return server.create_database(name)
        if backend == "mongodb":
            server = request.getfixturevalue("mongo")
            return f"mongodb://127.0.0.1:{server.port}/{name}"
        raise ValueError(backend)

    return make


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database_url(backend: str, database_url_for: object) -> str:
    return database_url_for(backend)  # type: ignore[operator]
