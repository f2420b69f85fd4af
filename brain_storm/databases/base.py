"""What every database driver implements, and the shapes it returns.

A driver stores normalised :class:`~brain_storm.messages.Message` records in
three collections keyed as follows, so that every write is an idempotent
upsert:

    users       user_id                    fields merge, the latest value wins
    snapshots   (user_id, datetime)        inserted once
    results     (user_id, datetime, topic) the latest value wins

Writes arrive as a :class:`Batch`, already merged and sorted by key (sorted
keys keep concurrent savers from deadlocking on each other's rows), and a
driver commits a batch entirely or not at all.  Reads return plain JSON
values built by the ``*_record`` helpers below, so every backend answers in
exactly the same shape (documented in docs/messages.md).

Drivers import nothing from :mod:`brain_storm.saver` or the operator.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from brain_storm.errors import NotFoundError
from brain_storm.messages import (
    TOPIC_PATTERN,
    Message,
    parse_datetime_ms,
    parse_user_id,
)

DEFAULT_DATABASE_NAME = "brain_storm"


@dataclass(slots=True)
class Batch:
    """Messages merged into the rows they write, each key once, sorted by key."""

    users: list[tuple[int, dict[str, Any]]]
    snapshots: list[tuple[int, int]]
    results: list[tuple[int, int, str, Any]]

    @classmethod
    def of(cls, messages: Iterable[Message]) -> Batch:
        users: dict[int, dict[str, Any]] = {}
        snapshots: set[tuple[int, int]] = set()
        results: dict[tuple[int, int, str], Any] = {}
        for message in messages:
            fields = users.setdefault(message.user_id, {})
            fields.update(message.user)
            if message.datetime_ms is not None:
                snapshots.add((message.user_id, message.datetime_ms))
                key = (message.user_id, message.datetime_ms, message.topic)
                results[key] = message.result
        return cls(
            users=sorted(users.items()),
            snapshots=sorted(snapshots),
            results=[(*key, results[key]) for key in sorted(results)],
        )


class Driver(abc.ABC):
    """A database driver: built from a URL, saves batches, answers reads."""

    schemes: ClassVar[tuple[str, ...]] = ()

    @classmethod
    @abc.abstractmethod
    def from_url(cls, url: str) -> Driver:
        """Connect lazily to the database named by ``url``."""

    def save_messages(self, messages: list[Message]) -> None:
        """Commit ``messages`` (already validated) as one batch."""
        self.save_batch(Batch.of(messages))

    @abc.abstractmethod
    def save_batch(self, batch: Batch) -> None:
        """Commit every row of ``batch``, or none of them.

        Raises TransientError when the database may accept the batch later
        and PermanentError when it never will.
        """

    @abc.abstractmethod
    def get_users(self) -> list[dict[str, Any]]:
        """Every user as ``{"user_id", "username"}``, by user id."""

    @abc.abstractmethod
    def get_one_user(self, user_id: int) -> dict[str, Any]:
        """One user with all its fields."""

    @abc.abstractmethod
    def get_snapshots(self, user_id: int) -> list[dict[str, Any]]:
        """A user's snapshots as ``{"snapshot_id", "datetime"}``, oldest first."""

    @abc.abstractmethod
    def get_one_snapshot(self, user_id: int, snapshot_id: int) -> dict[str, Any]:
        """One snapshot with the sorted names of the results it has."""

    @abc.abstractmethod
    def get_result(self, user_id: int, snapshot_id: int, result_name: str) -> Any:
        """The stored value of one result."""

    def ping(self) -> None:  # noqa: B027 - a driver without a server has nothing to ask
        """Raise TransientError unless the database answers right now."""

    def close(self) -> None:  # noqa: B027 - a driver without connections keeps none
        """Release connections; the driver reconnects if used again."""

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def user_id_arg(user_id: int | str) -> int:
    return parse_user_id(user_id, "user_id")


def snapshot_id_arg(snapshot_id: int | str) -> int:
    return parse_datetime_ms(snapshot_id, "snapshot_id")


def result_name_arg(user_id: int, snapshot_id: int, name: str) -> str:
    """``name`` if it can name a result; otherwise nothing is stored under it."""
    if not isinstance(name, str) or not TOPIC_PATTERN.match(name):
        raise no_result(user_id, snapshot_id, name)
    return name


def iso_ms(datetime_ms: int) -> str:
    """``1600000000123`` → ``"2020-09-13T12:26:40.123Z"``."""
    seconds, millis = divmod(datetime_ms, 1000)
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


def user_summary(user_id: int, username: str | None) -> dict[str, Any]:
    return {"user_id": user_id, "username": username}


def user_record(
    user_id: int, username: str | None, birthday: int | None, gender: str | None
) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "username": username,
        "birthday": birthday,
        "gender": gender,
    }


def snapshot_summary(datetime_ms: int) -> dict[str, Any]:
    return {"snapshot_id": datetime_ms, "datetime": iso_ms(datetime_ms)}


def snapshot_record(datetime_ms: int, results: Iterable[str]) -> dict[str, Any]:
    return {**snapshot_summary(datetime_ms), "results": sorted(results)}


def no_user(user_id: int) -> NotFoundError:
    return NotFoundError(f"no user {user_id}")


def no_snapshot(user_id: int, snapshot_id: int) -> NotFoundError:
    return NotFoundError(f"no snapshot {snapshot_id} for user {user_id}")


def no_result(user_id: int, snapshot_id: int, name: str) -> NotFoundError:
    return NotFoundError(
        f"no result {name!r} in snapshot {snapshot_id} of user {user_id}"
    )


def to_signed64(value: int) -> int:
    """Fold an unsigned 64-bit id into a signed 64-bit column, losslessly."""
    return value - 2**64 if value >= 2**63 else value


def from_signed64(value: int) -> int:
    return value + 2**64 if value < 0 else value
