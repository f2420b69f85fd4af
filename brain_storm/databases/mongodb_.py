"""The MongoDB driver, on pymongo.

Any MongoDB URL works (``mongodb://user@host:27017/db?tls=true``, or
``mongodb+srv://``); without a database name the driver uses ``brain_storm``.
Unique indexes on the upsert keys are created on first use, before any
write, so that concurrent upserts can never insert a key twice.

A batch is three unordered bulk writes (users, snapshots, results, in that
order), not one transaction, since transactions need a replica set: if a
saver dies between them, the redelivered batch completes the work, and a
result is never visible before its snapshot.  Unsigned 64-bit user ids are
folded into BSON's signed 64-bit integers; datetimes are BSON dates, which
keep milliseconds exactly.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo
from bson.errors import BSONError
from pymongo import UpdateOne
from pymongo import errors as mongo_errors

from brain_storm.databases import base
from brain_storm.databases.base import Batch, Driver
from brain_storm.errors import DatabaseUnavailableError, InvalidURLError, UnstorableError
from brain_storm.urls import mask_url, redact

SERVER_SELECTION_TIMEOUT_MS = 10_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)
DUPLICATE_KEY = 11000  # a concurrent upsert won the race: retrying succeeds

INDEXES = {
    "users": [("user_id", pymongo.ASCENDING)],
    "snapshots": [("user_id", pymongo.ASCENDING), ("datetime", pymongo.ASCENDING)],
    "results": [
        ("user_id", pymongo.ASCENDING),
        ("datetime", pymongo.ASCENDING),
        ("topic", pymongo.ASCENDING),
    ],
}


class MongoDBDriver(Driver):
    schemes = ("mongodb", "mongodb+srv")

    def __init__(self, url: str) -> None:
        self.url = url
        self.masked_url = mask_url(url)
        self._client: pymongo.MongoClient | None = None
        self._database: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> MongoDBDriver:
        return cls(url)

    def _db(self) -> Any:
        with self._lock:
            if self._database is None:
                options: dict[str, Any] = {"appname": "brain_storm saver"}
                if "serverselectiontimeoutms" not in self.url.lower():
                    options["serverSelectionTimeoutMS"] = SERVER_SELECTION_TIMEOUT_MS
                try:
                    client = pymongo.MongoClient(self.url, **options)
                except (ValueError, mongo_errors.ConfigurationError) as error:
                    raise InvalidURLError(
                        f"bad MongoDB URL {self.masked_url}: "
                        f"{redact(str(error), self.url)}") from None
                database = client.get_default_database(base.DEFAULT_DATABASE_NAME)
                try:
                    for name, keys in INDEXES.items():
                        database[name].create_index(keys, unique=True)
                except BaseException:
                    client.close()
                    raise
                self._client, self._database = client, database
            return self._database

    def _translate(self, error: Exception) -> Exception:
        """pymongo's error, as a retry-later or a never-again error."""
        if isinstance(error, mongo_errors.BulkWriteError):
            codes = {e.get("code") for e in error.details.get("writeErrors", [])}
            if codes <= {DUPLICATE_KEY}:
                return DatabaseUnavailableError("MongoDB: concurrent upsert; retrying")
            message = error.details["writeErrors"][0].get("errmsg", str(error))
            return UnstorableError(f"MongoDB refused the batch: {message}")
        if isinstance(error, (BSONError, mongo_errors.DocumentTooLarge)):
            return UnstorableError(f"MongoDB cannot store the batch: {error}")
        return DatabaseUnavailableError(
            f"MongoDB at {self.masked_url}: {redact(str(error), self.url)}")

    def _run(self, action: Any) -> Any:
        try:
            return action(self._db())
        except (mongo_errors.PyMongoError, BSONError) as error:
            raise self._translate(error) from error

    def save_batch(self, batch: Batch) -> None:
        users = [
            UpdateOne(
                {"user_id": base.to_signed64(uid)},
                _set_or_insert(fields, base.to_signed64(uid)),
                upsert=True,
            )
            for uid, fields in batch.users
        ]
        snapshots = [
            UpdateOne(
                {"user_id": base.to_signed64(uid), "datetime": _date(ms)},
                _set_or_insert({}, base.to_signed64(uid)),
                upsert=True,
            )
            for uid, ms in batch.snapshots
        ]
        results = [
            UpdateOne(
                {"user_id": base.to_signed64(uid), "datetime": _date(ms), "topic": t},
                {"$set": {"data": value}},
                upsert=True,
            )
            for uid, ms, t, value in batch.results
        ]

        def write(db: Any) -> None:
            for name, operations in (
                ("users", users),
                ("snapshots", snapshots),
                ("results", results),
            ):
                if operations:
                    db[name].bulk_write(operations, ordered=False)

        self._run(write)

    def get_users(self) -> list[dict[str, Any]]:
        documents = self._run(
            lambda db: list(db.users.find({}, {"_id": 0, "user_id": 1, "username": 1}))
        )
        users = [
            base.user_summary(base.from_signed64(d["user_id"]), d.get("username"))
            for d in documents
        ]
        return sorted(users, key=lambda user: user["user_id"])

    def get_one_user(self, user_id: int) -> dict[str, Any]:
        user_id = base.user_id_arg(user_id)
        document = self._run(
            lambda db: db.users.find_one({"user_id": base.to_signed64(user_id)})
        )
        if document is None:
            raise base.no_user(user_id)
        return base.user_record(
            user_id,
            document.get("username"),
            document.get("birthday"),
            document.get("gender"),
        )

    def get_snapshots(self, user_id: int) -> list[dict[str, Any]]:
        user_id = base.user_id_arg(user_id)
        self.get_one_user(user_id)
        documents = self._run(
            lambda db: list(
                db.snapshots.find(
                    {"user_id": base.to_signed64(user_id)}, {"_id": 0, "datetime": 1}
                ).sort("datetime", pymongo.ASCENDING)
            )
        )
        return [base.snapshot_summary(_ms(d["datetime"])) for d in documents]

    def get_one_snapshot(self, user_id: int, snapshot_id: int) -> dict[str, Any]:
        user_id = base.user_id_arg(user_id)
        snapshot_id = base.snapshot_id_arg(snapshot_id)
        key = {"user_id": base.to_signed64(user_id), "datetime": _date(snapshot_id)}

        def read(db: Any) -> tuple[Any, list[str]]:
            found = db.snapshots.find_one(key, {"_id": 1})
            topics = [d["topic"] for d in db.results.find(key, {"_id": 0, "topic": 1})]
            return found, topics

        found, topics = self._run(read)
        if found is None:
            raise base.no_snapshot(user_id, snapshot_id)
        return base.snapshot_record(snapshot_id, topics)

    def get_result(self, user_id: int, snapshot_id: int, result_name: str) -> Any:
        user_id = base.user_id_arg(user_id)
        snapshot_id = base.snapshot_id_arg(snapshot_id)
        result_name = base.result_name_arg(user_id, snapshot_id, result_name)
        key = {
            "user_id": base.to_signed64(user_id),
            "datetime": _date(snapshot_id),
            "topic": result_name,
        }
        document = self._run(lambda db: db.results.find_one(key, {"_id": 0, "data": 1}))
        if document is None:
            raise base.no_result(user_id, snapshot_id, result_name)
        return document["data"]

    def ping(self) -> None:
        self._run(lambda db: db.command("ping"))

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client = self._database = None


def _set_or_insert(fields: dict[str, Any], user_id: int) -> dict[str, Any]:
    """The update of an upsert: set ``fields``, or just make sure the row exists.

    An update must change something, so a row with nothing to set repeats a
    key of its filter on insert, which changes nothing.
    """
    return {"$set": fields} if fields else {"$setOnInsert": {"user_id": user_id}}


def _date(datetime_ms: int) -> datetime:
    return EPOCH + datetime_ms * ONE_MS


def _ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // ONE_MS
