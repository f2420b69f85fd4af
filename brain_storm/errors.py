"""The one error tree of brain_storm, split by what the caller should do.

::

    BrainStormError
     ├── ConfigurationError        fix the configuration; retrying will not help
     │    ├── InvalidURLError
     │    ├── UnknownSchemeError   names the schemes that are known
     │    └── MissingDriverError   names the extra to install
     ├── PermanentError            this message can never be saved: set it aside
     │    ├── InvalidMessageError  the message breaks the contract (reason, path)
     │    └── UnstorableError      the database refused a value for good
     ├── TransientError            may succeed later: keep the message, retry
     │    └── DatabaseUnavailableError
     ├── UnroutableError           a published message reached no queue
     └── NotFoundError             a user, snapshot or result that does not exist

Library errors (psycopg, pymongo, sqlite3, pika) are translated into this tree
at one boundary per driver, with the original chained as ``__cause__``.
"""

from __future__ import annotations


class BrainStormError(Exception):
    """Base of every error raised on purpose by brain_storm."""


class ConfigurationError(BrainStormError):
    """The configuration is wrong; retrying the same call cannot succeed."""


class InvalidURLError(ConfigurationError):
    """A database or queue URL could not be understood."""


class UnknownSchemeError(ConfigurationError):
    """No driver is registered for a URL scheme."""

    def __init__(self, scheme: str, known: list[str]) -> None:
        self.scheme = scheme
        self.known = known
        super().__init__(
            f"no database driver for scheme {scheme!r}; known schemes: "
            + ", ".join(known)
        )


class MissingDriverError(ConfigurationError):
    """A driver exists but an optional package it needs is not installed."""


class PermanentError(BrainStormError):
    """This message will never be saved, however often it is retried.

    ``reason`` is a short machine-readable code (``invalid_json``,
    ``missing_field``, ``too_large``…) used in dead-letter headers and metrics.
    """

    reason = "permanent"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class InvalidMessageError(PermanentError):
    """The message breaks the message contract (see docs/messages.md).

    ``path`` points at the offending value, e.g. ``$.pose.rotation.x``.
    """

    reason = "invalid_message"

    def __init__(self, message: str, *, reason: str, path: str = "$") -> None:
        self.path = path
        where = "" if path == "$" else f" at {path}"
        super().__init__(f"{message}{where}", reason=reason)


class UnstorableError(PermanentError):
    """The database refused a value and will refuse it again."""

    reason = "unstorable"


class TransientError(BrainStormError):
    """The operation may succeed later: keep the message and retry."""


class DatabaseUnavailableError(TransientError):
    """The database cannot be reached or is not answering right now."""


class BrokerUnavailableError(TransientError):
    """RabbitMQ cannot be reached, refused the login, or is not answering."""


class UnroutableError(BrainStormError):
    """A published message matched no queue: nothing consumes its routing key."""


class NotFoundError(BrainStormError, LookupError):
    """A user, snapshot or result that the database does not hold."""
