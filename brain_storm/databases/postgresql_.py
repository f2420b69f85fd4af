"""The PostgreSQL driver, on psycopg 3.

Any libpq URL works (``postgresql://user@host:5432/db?sslmode=verify-full``,
or ``postgres://``); without a database name the driver uses ``brain_storm``.
The schema is created on first use under an advisory lock, so that several
savers starting at once do not race.  A batch is three statements, one per
table, each upserting whole arrays through ``unnest``, sent in one pipeline
and committed as one transaction.

User ids are ``numeric(20)`` with a check that keeps them unsigned 64-bit;
datetimes are ``timestamptz`` with the milliseconds exact; result values are
stored as ``json`` so their text reads back exactly as it was written.

There are no foreign keys: a batch upserts the users and snapshots its
results belong to in the same transaction, so no row is ever orphaned, and
the per-row checks cost a third of the server's time per message
(docs/performance.md).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import psycopg
import psycopg.conninfo

from brain_storm.databases import base
from brain_storm.databases.base import Batch, Driver
from brain_storm.errors import DatabaseUnavailableError, InvalidURLError, UnstorableError
from brain_storm.jsontext import dumps
from brain_storm.urls import mask_url, redact

DEFAULT_OPTIONS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
"""libpq options used unless the URL sets them."""
SCHEMA_LOCK_KEY = 0x62726169_6E73746F  # "brainsto", any constant shared by all savers

SCHEMA = f"""
SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY});
CREATE TABLE IF NOT EXISTS users (
    user_id  numeric(20, 0) PRIMARY KEY
             CHECK (user_id BETWEEN 0 AND 18446744073709551615),
    username text,
    birthday bigint,
    gender   text
);
CREATE TABLE IF NOT EXISTS snapshots (
    user_id  numeric(20, 0) NOT NULL,
    datetime timestamptz NOT NULL,
    PRIMARY KEY (user_id, datetime)
);
CREATE TABLE IF NOT EXISTS results (
    user_id  numeric(20, 0) NOT NULL,
    datetime timestamptz NOT NULL,
    topic    text NOT NULL,
    data     json NOT NULL,
    PRIMARY KEY (user_id, datetime, topic)
);
"""

# Each statement takes whole columns as arrays: one round trip per table,
# however large the batch.  Rows are unique and sorted by key (see Batch).
UPSERT_USERS = """
INSERT INTO users AS u (user_id, username, birthday, gender)
SELECT id::numeric, name, birthday, gender
FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::text[])
     AS x (id, name, birthday, gender)
ON CONFLICT (user_id) DO UPDATE SET
    username = coalesce(excluded.username, u.username),
    birthday = coalesce(excluded.birthday, u.birthday),
    gender   = coalesce(excluded.gender, u.gender)
WHERE (excluded.birthday IS NOT NULL AND excluded.birthday IS DISTINCT FROM u.birthday)
   OR (excluded.gender IS NOT NULL AND excluded.gender IS DISTINCT FROM u.gender)
   OR (excluded.username IS NOT NULL AND excluded.username IS DISTINCT FROM u.username)
"""
INSERT_SNAPSHOTS = """
INSERT INTO snapshots (user_id, datetime)
SELECT id::numeric, timestamptz 'epoch' + ms * interval '1 millisecond'
FROM unnest(%b::text[], %b::bigint[]) AS x (id, ms)
ON CONFLICT DO NOTHING
"""
UPSERT_RESULTS = """
INSERT INTO results (user_id, datetime, topic, data)
SELECT id::numeric, timestamptz 'epoch' + ms * interval '1 millisecond', topic, data::json
FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::text[]) AS x (id, ms, topic, data)
ON CONFLICT (user_id, datetime, topic) DO UPDATE SET data = excluded.data
"""
MS = "(extract(epoch FROM datetime) * 1000)::bigint"

# Errors that say the data itself is wrong: the same batch will fail again.
# Everything else (lost connections, deadlocks, serialisation failures, a full
# disk, missing grants) is the server's state, and worth a retry.
_PERMANENT = (psycopg.DataError, psycopg.IntegrityError)


def conninfo_of(url: str) -> str:
    """``url`` with the default database name filled in when it has none."""
    parts = urlsplit(url)
    if parts.path in ("", "/") and "dbname" not in parse_qs(parts.query):
        parts = parts._replace(path="/" + base.DEFAULT_DATABASE_NAME)
    return urlunsplit(parts._replace(scheme="postgresql"))


class PostgreSQLDriver(Driver):
    schemes = ("postgresql", "postgres")

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.masked_url = mask_url(conninfo)
        self._connection: psycopg.Connection | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> PostgreSQLDriver:
        conninfo = conninfo_of(url)
        try:
            psycopg.conninfo.conninfo_to_dict(conninfo)
        except psycopg.Error as error:
            raise InvalidURLError(
                f"bad PostgreSQL URL {mask_url(url)}: "
                f"{redact(_first_line(error), url)}") from None
        return cls(conninfo)

    def _connect(self) -> psycopg.Connection:
        if self._connection is None or self._connection.closed:
            options: dict[str, Any] = {"application_name": "brain_storm saver"}
            # A server that vanishes without a reset would otherwise hang a
            # flush forever: TCP keepalives turn that into an error in ~1 min.
            for name, value in DEFAULT_OPTIONS.items():
                if name not in self.conninfo:
                    options[name] = value
            try:
                connection = psycopg.connect(self.conninfo, autocommit=True, **options)
            except psycopg.Error as error:
                # libpq says "invalid ... value" of an option it cannot use:
                # no retry will change the URL.
                if "invalid " in str(error) and " value" in str(error):
                    raise InvalidURLError(
                        f"bad PostgreSQL URL {self.masked_url}: "
                        f"{redact(_first_line(error), self.conninfo)}") from None
                raise
            try:
                with connection.transaction():
                    connection.execute(SCHEMA)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    @contextmanager
    def _session(self) -> Iterator[psycopg.Connection]:
        """One locked use of the connection, with psycopg's errors translated.

        Any error but a refusal of the data drops the connection, so the next
        call starts on a fresh one.
        """
        with self._lock:
            try:
                yield self._connect()
            except _PERMANENT as error:
                raise UnstorableError(
                    f"PostgreSQL refused the batch: {self._say(error)}"
                ) from error
            except psycopg.Error as error:
                self._drop()
                raise DatabaseUnavailableError(
                    f"PostgreSQL at {self.masked_url}: {self._say(error)}"
                ) from error

    def _say(self, error: BaseException) -> str:
        """The first line of a psycopg error, without the URL's password."""
        return redact(_first_line(error), self.conninfo)

    def _drop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except psycopg.Error:
                pass
            self._connection = None

    def save_batch(self, batch: Batch) -> None:
        users = _columns(
            [
                (str(uid), f.get("username"), f.get("birthday"), f.get("gender"))
                for uid, f in batch.users
            ],
            4,
        )
        snapshots = _columns([(str(uid), ms) for uid, ms in batch.snapshots], 2)
        results = _columns(
            [
                (str(uid), ms, topic, dumps(value))
                for uid, ms, topic, value in batch.results
            ],
            4,
        )
        with self._session() as connection:
            with connection.pipeline(), connection.transaction():
                connection.execute(UPSERT_USERS, users)
                connection.execute(INSERT_SNAPSHOTS, snapshots)
                connection.execute(UPSERT_RESULTS, results)

    def get_users(self) -> list[dict[str, Any]]:
        with self._session() as connection:
            rows = connection.execute(
                "SELECT u.user_id::text, u.username FROM users u ORDER BY u.user_id"
            ).fetchall()
        return [base.user_summary(int(uid), name) for uid, name in rows]

    def get_one_user(self, user_id: int) -> dict[str, Any]:
        user_id = base.user_id_arg(user_id)
        with self._session() as connection:
            row = connection.execute(
                "SELECT username, birthday, gender FROM users "
                "WHERE user_id = %s::numeric",
                (str(user_id),),
            ).fetchone()
        if row is None:
            raise base.no_user(user_id)
        return base.user_record(user_id, *row)

    def get_snapshots(self, user_id: int) -> list[dict[str, Any]]:
        user_id = base.user_id_arg(user_id)
        self.get_one_user(user_id)
        with self._session() as connection:
            rows = connection.execute(
                f"SELECT {MS} FROM snapshots WHERE user_id = %s::numeric "
                "ORDER BY datetime",
                (str(user_id),),
            ).fetchall()
        return [base.snapshot_summary(ms) for (ms,) in rows]

    def get_one_snapshot(self, user_id: int, snapshot_id: int) -> dict[str, Any]:
        user_id = base.user_id_arg(user_id)
        snapshot_id = base.snapshot_id_arg(snapshot_id)
        with self._session() as connection:
            rows = connection.execute(
                "SELECT r.topic FROM snapshots s "
                "LEFT JOIN results r USING (user_id, datetime) "
                "WHERE s.user_id = %s::numeric "
                "AND s.datetime = timestamptz 'epoch' + %s * interval '1 millisecond'",
                (str(user_id), snapshot_id),
            ).fetchall()
        if not rows:
            raise base.no_snapshot(user_id, snapshot_id)
        topics = [topic for (topic,) in rows if topic is not None]
        return base.snapshot_record(snapshot_id, topics)

    def get_result(self, user_id: int, snapshot_id: int, result_name: str) -> Any:
        user_id = base.user_id_arg(user_id)
        snapshot_id = base.snapshot_id_arg(snapshot_id)
        result_name = base.result_name_arg(user_id, snapshot_id, result_name)
        with self._session() as connection:
            row = connection.execute(
                "SELECT data::text FROM results WHERE user_id = %s::numeric "
                "AND datetime = timestamptz 'epoch' + %s * interval '1 millisecond' "
                "AND topic = %s",
                (str(user_id), snapshot_id, result_name),
            ).fetchone()
        if row is None:
            raise base.no_result(user_id, snapshot_id, result_name)
        return json.loads(row[0])

    def ping(self) -> None:
        with self._session() as connection:
            connection.execute("SELECT 1")

    def close(self) -> None:
        with self._lock:
            self._drop()


def _columns(rows: list[tuple], width: int) -> list[list]:
    """Rows to the column lists that ``unnest`` takes."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

