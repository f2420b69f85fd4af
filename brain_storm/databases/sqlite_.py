"""The SQLite driver: the embedded default, standard library only.

URLs follow the common convention: ``sqlite:///relative/file.db``,
``sqlite:////absolute/file.db`` and ``sqlite:///:memory:``; ``sqlite://``
alone means ``brain_storm.sqlite3`` in the working directory.  Query options
are SQLite's URI parameters (``?mode=ro``).  The file runs
in WAL mode so that readers never block the saver.  As on every backend,
a batch writes the users and snapshots its results belong to in the same
transaction, so rows are never orphaned without foreign keys.  Unsigned 64-bit user ids
are folded into SQLite's signed integers and unfolded on the way out.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from brain_storm.databases import base
from brain_storm.databases.base import Batch, Driver
from brain_storm.errors import DatabaseUnavailableError, UnstorableError
from brain_storm.jsontext import dumps

DEFAULT_PATH = "brain_storm.sqlite3"
BUSY_TIMEOUT_MS = 30_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id  INTEGER PRIMARY KEY,
    username TEXT,
    birthday INTEGER,
    gender   TEXT
);
CREATE TABLE IF NOT EXISTS snapshots (
    user_id     INTEGER NOT NULL,
    datetime_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, datetime_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS results (
    user_id     INTEGER NOT NULL,
    datetime_ms INTEGER NOT NULL,
    topic       TEXT NOT NULL,
    data        TEXT NOT NULL,
    PRIMARY KEY (user_id, datetime_ms, topic)
) WITHOUT ROWID;
"""

UPSERT_USER = """
INSERT INTO users (user_id, username, birthday, gender) VALUES (?, ?, ?, ?)
ON CONFLICT (user_id) DO UPDATE SET
    username = coalesce(excluded.username, username),
    birthday = coalesce(excluded.birthday, birthday),
    gender   = coalesce(excluded.gender, gender)
"""
INSERT_SNAPSHOT = "INSERT OR IGNORE INTO snapshots (user_id, datetime_ms) VALUES (?, ?)"
UPSERT_RESULT = """
INSERT INTO results (user_id, datetime_ms, topic, data) VALUES (?, ?, ?, ?)
ON CONFLICT (user_id, datetime_ms, topic) DO UPDATE SET data = excluded.data
"""


def path_of(url: str) -> str:
    """The file a ``sqlite://`` URL names."""
    path = unquote(urlsplit(url).path)
    if path in ("", "/"):
        return DEFAULT_PATH
    return path[1:]


def database_of(url: str) -> str:
    """What sqlite3.connect takes: the path, or a ``file:`` URI with options."""
    path, query = path_of(url), urlsplit(url).query
    return f"file:{quote(path)}?{query}" if query else path


class SQLiteDriver(Driver):
    schemes = ("sqlite", "sqlite3")

    def __init__(self, path: str, *, database: str | None = None) -> None:
        self.path = path
        self.database = database or path
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> SQLiteDriver:
        return cls(path_of(url), database=database_of(url))

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(
                self.database, isolation_level=None, check_same_thread=False,
                uri=self.database.startswith("file:"),
            )
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if self.path != ":memory:":
                connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.executescript(SCHEMA)
            self._connection = connection
        return self._connection

    @contextmanager
    def _session(self) -> Iterator[sqlite3.Connection]:
        """One locked use of the connection, with sqlite3's errors translated."""
        with self._lock:
            try:
                yield self._connect()
            except (sqlite3.IntegrityError, sqlite3.DataError) as error:
                raise UnstorableError(f"SQLite refused the batch: {error}") from error
            except sqlite3.Error as error:
                raise DatabaseUnavailableError(
                    f"SQLite database {self.path!r}: {error}"
                ) from error

    def save_batch(self, batch: Batch) -> None:
        users = [
            (
                base.to_signed64(user_id),
                fields.get("username"),
                fields.get("birthday"),
                fields.get("gender"),
            )
            for user_id, fields in batch.users
        ]
        snapshots = [(base.to_signed64(uid), ms) for uid, ms in batch.snapshots]
        results = [
            (base.to_signed64(uid), ms, topic, dumps(value))
            for uid, ms, topic, value in batch.results
        ]
        with self._session() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany(UPSERT_USER, users)
                connection.executemany(INSERT_SNAPSHOT, snapshots)
                connection.executemany(UPSERT_RESULT, results)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def get_users(self) -> list[dict[str, Any]]:
        with self._session() as connection:
            rows = connection.execute("SELECT user_id, username FROM users").fetchall()
        users = [base.user_summary(base.from_signed64(uid), name) for uid, name in rows]
        return sorted(users, key=lambda user: user["user_id"])

    def get_one_user(self, user_id: int) -> dict[str, Any]:
        user_id = base.user_id_arg(user_id)
        with self._session() as connection:
            row = connection.execute(
                "SELECT username, birthday, gender FROM users WHERE user_id = ?",
                (base.to_signed64(user_id),),
            ).fetchone()
        if row is None:
            raise base.no_user(user_id)
        return base.user_record(user_id, *row)

    def get_snapshots(self, user_id: int) -> list[dict[str, Any]]:
        user_id = base.user_id_arg(user_id)
        self.get_one_user(user_id)
        with self._session() as connection:
            rows = connection.execute(
                "SELECT datetime_ms FROM snapshots WHERE user_id = ? "
                "ORDER BY datetime_ms",
                (base.to_signed64(user_id),),
            ).fetchall()
        return [base.snapshot_summary(ms) for (ms,) in rows]

    def get_one_snapshot(self, user_id: int, snapshot_id: int) -> dict[str, Any]:
        user_id = base.user_id_arg(user_id)
        snapshot_id = base.snapshot_id_arg(snapshot_id)
        key = (base.to_signed64(user_id), snapshot_id)
        with self._session() as connection:
            found = connection.execute(
                "SELECT 1 FROM snapshots WHERE user_id = ? AND datetime_ms = ?", key
            ).fetchone()
            topics = connection.execute(
                "SELECT topic FROM results WHERE user_id = ? AND datetime_ms = ?", key
            ).fetchall()
        if found is None:
            raise base.no_snapshot(user_id, snapshot_id)
        return base.snapshot_record(snapshot_id, [topic for (topic,) in topics])

    def get_result(self, user_id: int, snapshot_id: int, result_name: str) -> Any:
        user_id = base.user_id_arg(user_id)
        snapshot_id = base.snapshot_id_arg(snapshot_id)
        result_name = base.result_name_arg(user_id, snapshot_id, result_name)
        with self._session() as connection:
            row = connection.execute(
                "SELECT data FROM results "
                "WHERE user_id = ? AND datetime_ms = ? AND topic = ?",
                (base.to_signed64(user_id), snapshot_id, result_name),
            ).fetchone()
        if row is None:
            raise base.no_result(user_id, snapshot_id, result_name)
        return json.loads(row[0])

    def ping(self) -> None:
        with self._session() as connection:
            connection.execute("SELECT 1")

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
