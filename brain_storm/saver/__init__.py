"""The saver: validate parser results and store them through a database driver.

    >>> from brain_storm.saver import Saver
    >>> saver = Saver("sqlite:///brain_storm.sqlite3")
    >>> saver.save("pose", '{"userId": "7", "datetime": "1600000000123", ...}')

:class:`Saver` is the whole Python API: ``save`` for one message,
``save_many`` for the queue consumer (one round trip for a batch, one outcome
per message), and the read side.  The RabbitMQ service built on it lives in
:mod:`brain_storm.saver.consumer`; the command line in ``__main__``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from brain_storm.databases import Driver, connect
from brain_storm.errors import PermanentError, UnstorableError
from brain_storm.messages import DEFAULT_MAX_MESSAGE_BYTES, Message, parse_message
from brain_storm.urls import mask_url

__all__ = ["DEFAULT_DATABASE_URL", "Saver", "default_database_url"]

DEFAULT_DATABASE_URL = "sqlite:///brain_storm.sqlite3"
DATABASE_URL_ENV = "BRAIN_STORM_DATABASE_URL"

log = logging.getLogger(__name__)


def default_database_url() -> str:
    """``$BRAIN_STORM_DATABASE_URL``, else an SQLite file in the working folder."""
    return os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL


class Saver:
    """Saves messages of any topic to the database at ``database_url``."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.database_url = database_url or default_database_url()
        self.max_message_bytes = max_message_bytes
        self.driver: Driver = connect(self.database_url)

    def __repr__(self) -> str:
        return f"Saver({mask_url(self.database_url)!r})"

    def save(self, topic: str, data: Any) -> None:
        """Save one message; ``data`` is a dict, or its JSON as str or bytes.

        Raises PermanentError if the message can never be saved and
        TransientError if the database is unavailable right now.
        """
        message = parse_message(topic, data, max_message_bytes=self.max_message_bytes)
        self.driver.save_messages([message])

    def save_many(
        self, items: Sequence[tuple[str, Any]]
    ) -> list[PermanentError | None]:
        """Save ``(topic, data)`` pairs in one round trip; one outcome each.

        An outcome is ``None`` for a saved message and the PermanentError
        that refused it otherwise, so one bad message never sinks its batch.
        A TransientError is raised instead when the batch as a whole may be
        saved later: then nothing of it has been committed (or, on a backend
        without transactions, re-saving it is harmless).
        """
        outcomes: list[PermanentError | None] = [None] * len(items)
        messages: list[Message] = []
        positions: list[int] = []
        for position, (topic, data) in enumerate(items):
            try:
                message = parse_message(
                    topic, data, max_message_bytes=self.max_message_bytes
                )
            except PermanentError as error:
                outcomes[position] = error
                continue
            messages.append(message)
            positions.append(position)
        if not messages:
            return outcomes

        try:
            self.driver.save_messages(messages)
        except UnstorableError:
            # The database refused something in the batch: find out what by
            # saving each message alone, so that the rest is still saved.
            log.debug("batch of %d refused; saving one at a time", len(messages))
            for position, message in zip(positions, messages, strict=True):
                try:
                    self.driver.save_messages([message])
                except UnstorableError as error:
                    outcomes[position] = error
        return outcomes

    def get_users(self) -> list[dict[str, Any]]:
        return self.driver.get_users()

    def get_one_user(self, user_id: int | str) -> dict[str, Any]:
        return self.driver.get_one_user(user_id)

    def get_snapshots(self, user_id: int | str) -> list[dict[str, Any]]:
        return self.driver.get_snapshots(user_id)

    def get_one_snapshot(
        self, user_id: int | str, snapshot_id: int | str
    ) -> dict[str, Any]:
        return self.driver.get_one_snapshot(user_id, snapshot_id)

    def get_result(
        self, user_id: int | str, snapshot_id: int | str, result_name: str
    ) -> Any:
        return self.driver.get_result(user_id, snapshot_id, result_name)

    def ping(self) -> None:
        self.driver.ping()

    def close(self) -> None:
        self.driver.close()

    def __enter__(self) -> Saver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
