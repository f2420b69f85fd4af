"""The message contract: turn what a parser published into one normalised record.

Parsers publish protobuf messages rendered with the standard protobuf JSON
mapping, in one of two shapes (see docs/messages.md)::

    flat    {"userId": "7", "datetime": "1600000000123", "pose": {...}}
    nested  {"user": {"userId": "7", ...}, "snapshot": {"datetime": "..."},
             "result": {...}}

and the ``user`` topic carries the user record itself.  :func:`parse_message`
accepts either shape, checks every value against the contract and returns a
:class:`Message` that every driver stores the same way.  Anything that breaks
the contract raises :class:`~brain_storm.errors.InvalidMessageError` naming the
reason and the path of the offending value; nothing is ever half-accepted.

This module sits below the drivers and the saver and imports neither.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from brain_storm.errors import InvalidMessageError

USER_TOPIC = "user"
KNOWN_TOPICS = ("user", "pose", "feelings", "color_image", "depth_image")
"""Topics brain_storm parsers publish today; any other simple name works too."""

TOPIC_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,62}\Z")
U64_MAX = 2**64 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1
MAX_DATETIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
MAX_DEPTH = 32
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
GENDERS = ("MALE", "FEMALE", "OTHER")  # the protobuf enum, by number

_USER_ID_KEYS = ("userId", "user_id")
_USER_FIELDS = {"username", "birthday", "gender"}
_NESTED_KEYS = frozenset(("user", "snapshot", "result"))
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])([A-Z])|(?<=[A-Z])([A-Z])(?=[a-z])")
_snake_cache: dict[str, str] = {}


@dataclass(frozen=True, slots=True)
class Message:
    """One normalised message, ready for any driver.

    ``user`` holds only the user fields the message carried (``username``,
    ``birthday`` in seconds, ``gender`` as an enum name); absent fields are
    absent, so a later message merges into the stored user instead of
    erasing it.  ``datetime_ms`` and ``result`` are ``None`` for the ``user``
    topic only.
    """

    topic: str
    user_id: int
    datetime_ms: int | None = None
    user: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    raw: Any = field(default=None, compare=False, repr=False)


def check_topic(topic: str) -> str:
    """Return ``topic`` if it is a simple lower-case word, else refuse it."""
    if not isinstance(topic, str) or not TOPIC_PATTERN.match(topic):
        raise InvalidMessageError(
            f"topic {topic!r} is not a simple name (lower-case letters, digits "
            "and '_', starting with a letter, at most 63 characters)",
            reason="bad_topic",
        )
    return topic


def parse_message(
    topic: str, data: Any, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> Message:
    """Validate and normalise one message of ``topic``.

    ``data`` may be a ``dict`` or the JSON text of one as ``str`` or ``bytes``.
    """
    topic = check_topic(topic)
    obj = decode(data, max_message_bytes=max_message_bytes)
    if topic == USER_TOPIC:
        message = _parse_user_message(obj)
    elif obj.keys() & _NESTED_KEYS and obj.keys() <= _NESTED_KEYS:
        message = _parse_nested(topic, obj)
    else:
        message = _parse_flat(topic, obj)
    object.__setattr__(message, "raw", data)
    return message


def decode(data: Any, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> dict:
    """Decode ``data`` into a JSON object, refusing anything else."""
    if isinstance(data, dict):
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        if len(data) > max_message_bytes:
            raise _too_large(len(data), max_message_bytes)
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidMessageError(
                f"body is not UTF-8 (byte {error.start})", reason="invalid_json"
            ) from None
    elif isinstance(data, str):
        if len(data) > max_message_bytes:
            raise _too_large(len(data.encode("utf-8")), max_message_bytes)
    else:
        raise InvalidMessageError(
            f"expected a JSON object, a str or bytes, got {type(data).__name__}",
            reason="not_an_object",
        )

    try:
        obj = json.loads(data, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise InvalidMessageError(
            f"body is not JSON: {error.msg} (line {error.lineno}, column "
            f"{error.colno})",
            reason="invalid_json",
        ) from None
    except RecursionError:
        raise InvalidMessageError(
            "body is nested too deeply to decode", reason="too_deep"
        ) from None
    if not isinstance(obj, dict):
        raise InvalidMessageError(
            f"body is a JSON {_json_type(obj)}, not an object", reason="not_an_object"
        )
    return obj


def _parse_flat(topic: str, obj: dict) -> Message:
    rest = dict(obj)
    user_id = _pop_user_id(rest, "$")
    if "datetime" not in rest:
        raise InvalidMessageError(
            "missing field 'datetime'", reason="missing_field", path="$"
        )
    datetime_ms = parse_datetime_ms(rest.pop("datetime"), "$.datetime")
    if not rest:
        raise InvalidMessageError(
            f"no result: expected a {topic!r} field besides userId and datetime",
            reason="missing_field",
        )
    return Message(topic, user_id, datetime_ms, {}, _result_of(topic, rest, "$"))


def _parse_nested(topic: str, obj: dict) -> Message:
    for key in ("user", "snapshot", "result"):
        if key not in obj:
            raise InvalidMessageError(
                f"nested message lacks {key!r}", reason="missing_field"
            )
    user = _expect_object(obj["user"], "$.user")
    snapshot = _expect_object(obj["snapshot"], "$.snapshot")

    user_id, fields = _parse_user(user, "$.user")
    extra = snapshot.keys() - {"datetime"}
    if extra:
        raise InvalidMessageError(
            f"unknown snapshot field {sorted(extra)[0]!r}",
            reason="unknown_field",
            path="$.snapshot",
        )
    if "datetime" not in snapshot:
        raise InvalidMessageError(
            "missing field 'datetime'", reason="missing_field", path="$.snapshot"
        )
    datetime_ms = parse_datetime_ms(snapshot["datetime"], "$.snapshot.datetime")
    result = _result_of(topic, obj["result"], "$.result")
    return Message(topic, user_id, datetime_ms, fields, result)


def _parse_user_message(obj: dict) -> Message:
    if obj.keys() == {"user"}:
        user_id, fields = _parse_user(_expect_object(obj["user"], "$.user"), "$.user")
    else:
        user_id, fields = _parse_user(obj, "$")
    return Message(USER_TOPIC, user_id, None, fields, None)


def _parse_user(obj: dict, path: str) -> tuple[int, dict[str, Any]]:
    rest = dict(obj)
    user_id = _pop_user_id(rest, path)
    fields: dict[str, Any] = {}
    for key, value in rest.items():
        name = snake_case(key)
        where = f"{path}.{key}"
        if name not in _USER_FIELDS:
            raise InvalidMessageError(
                f"unknown user field {key!r}", reason="unknown_field", path=path
            )
        if name in fields:
            raise InvalidMessageError(
                f"user field {name!r} given twice", reason="duplicate_field", path=path
            )
        if name == "username":
            if not isinstance(value, str):
                raise _wrong_type("a string", value, where)
            _check_string(value, where)
            fields[name] = value
        elif name == "birthday":
            fields[name] = _parse_int(value, where, I64_MIN, I64_MAX)
        else:
            fields[name] = _parse_gender(value, where)
    return user_id, fields


def _pop_user_id(rest: dict, path: str) -> int:
    present = [key for key in _USER_ID_KEYS if key in rest]
    if not present:
        raise InvalidMessageError(
            "missing field 'userId'", reason="missing_field", path=path
        )
    if len(present) > 1:
        raise InvalidMessageError(
            "both 'userId' and 'user_id' given", reason="duplicate_field", path=path
        )
    key = present[0]
    return parse_user_id(rest.pop(key), f"{path}.{key}")


def parse_user_id(value: Any, path: str = "$.userId") -> int:
    """An unsigned 64-bit user id, sent as a JSON number or a decimal string."""
    return _parse_int(value, path, 0, U64_MAX)


def parse_datetime_ms(value: Any, path: str = "$.datetime") -> int:
    """Milliseconds since the epoch, from a number, a decimal string or RFC 3339."""
    if isinstance(value, str) and not value.isdigit() and "T" in value:
        return _parse_rfc3339(value, path)
    return _parse_int(value, path, 0, MAX_DATETIME_MS)


def _parse_rfc3339(value: str, path: str) -> int:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidMessageError(
            f"datetime {value!r} is neither milliseconds nor RFC 3339",
            reason="bad_value",
            path=path,
        ) from None
    if moment.tzinfo is None:
        raise InvalidMessageError(
            f"datetime {value!r} has no UTC offset", reason="bad_value", path=path
        )
    if moment.microsecond % 1000:
        raise InvalidMessageError(
            f"datetime {value!r} is finer than milliseconds",
            reason="bad_value",
            path=path,
        )
    millis = round(moment.astimezone(timezone.utc).timestamp() * 1000)
    if not 0 <= millis <= MAX_DATETIME_MS:
        raise _out_of_range(value, path, 0, MAX_DATETIME_MS)
    return millis


def _parse_int(value: Any, path: str, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise _wrong_type("an integer", value, path)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and 0 < len(value) <= 21 and _is_decimal(value):
        number = int(value)
    elif isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        # 1600000000123.0 is what some JSON encoders make of a large integer;
        # below 2**53 it is still exact, above it the value may have been rounded.
        number = int(value)
    else:
        raise _wrong_type("an integer or a decimal string", value, path)
    if not low <= number <= high:
        raise _out_of_range(value, path, low, high)
    return number


def _is_decimal(text: str) -> bool:
    digits = text[1:] if text[0] == "-" else text
    return digits.isascii() and digits.isdigit()


def _parse_gender(value: Any, path: str) -> str:
    if isinstance(value, str) and value.upper() in GENDERS:
        return value.upper()
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < len(GENDERS):
            return GENDERS[value]
    raise InvalidMessageError(
        f"gender {value!r} is not one of {', '.join(GENDERS)} or 0-2",
        reason="bad_value",
        path=path,
    )


def _result_of(topic: str, value: Any, path: str) -> Any:
    result = clean_value(value, path)
    # {"pose": {...}} under a pose topic is the pose itself: unwrap it, so that
    # both shapes of the same message store the same result.
    if isinstance(result, dict) and len(result) == 1 and topic in result:
        result = result[topic]
    return result


def clean_value(value: Any, path: str = "$", depth: int = 0) -> Any:
    """Check a result value against the contract and snake_case its keys.

    Refused: NaN and infinities, integers outside signed 64 bits (send those as
    strings, as the protobuf JSON mapping does), NUL characters, empty keys,
    keys with '.' or a leading '$', two keys that snake_case to one name, and
    nesting deeper than MAX_DEPTH.
    """
    kind = type(value)
    if kind is dict:
        if depth >= MAX_DEPTH:
            raise InvalidMessageError(
                f"nested deeper than {MAX_DEPTH} levels", reason="too_deep", path=path
            )
        cleaned = {}
        for key, item in value.items():
            name = _check_key(key, path)
            if name in cleaned:
                raise InvalidMessageError(
                    f"keys {key!r} and another both mean {name!r}",
                    reason="duplicate_field",
                    path=path,
                )
            cleaned[name] = clean_value(item, f"{path}.{key}", depth + 1)
        return cleaned
    if kind is list:
        if depth >= MAX_DEPTH:
            raise InvalidMessageError(
                f"nested deeper than {MAX_DEPTH} levels", reason="too_deep", path=path
            )
        return [
            clean_value(item, f"{path}[{index}]", depth + 1)
            for index, item in enumerate(value)
        ]
    if kind is str:
        _check_string(value, path)
    elif kind is float:
        if not math.isfinite(value):
            raise InvalidMessageError(
                f"{value!r} is not a finite number", reason="bad_value", path=path
            )
    elif kind is int:
        if not I64_MIN <= value <= I64_MAX:
            raise InvalidMessageError(
                "integer does not fit in 64 bits; send it as a string",
                reason="out_of_range",
                path=path,
            )
    elif value is not None and kind is not bool:
        raise _wrong_type("a JSON value", value, path)
    return value


def _check_key(key: Any, path: str) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidMessageError(
            f"key {key!r} is not a non-empty string", reason="bad_key", path=path
        )
    if key[0] == "$" or "." in key or "\x00" in key:
        raise InvalidMessageError(
            f"key {key!r} holds '.', a leading '$' or NUL", reason="bad_key", path=path
        )
    return snake_case(key)


def _check_string(value: str, path: str) -> None:
    if "\x00" in value:
        raise InvalidMessageError(
            "string holds a NUL character", reason="bad_value", path=path
        )


def snake_case(key: str) -> str:
    """``colorImage`` → ``color_image``; snake_case and lower-case keys pass as-is."""
    cached = _snake_cache.get(key)
    if cached is not None:
        return cached
    name = _CAMEL_HUMP.sub(lambda m: "_" + (m.group(1) or m.group(2)), key).lower()
    if len(_snake_cache) < 4096:
        _snake_cache[key] = name
    return name


def _expect_object(value: Any, path: str) -> dict:
    if not isinstance(value, dict):
        raise _wrong_type("an object", value, path)
    return value


def _refuse_constant(name: str) -> Any:
    raise InvalidMessageError(
        f"{name} is not a JSON number", reason="bad_value", path="$"
    )


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"


def _wrong_type(expected: str, value: Any, path: str) -> InvalidMessageError:
    return InvalidMessageError(
        f"expected {expected}, got {_json_type(value)} {_short(value)}",
        reason="bad_value",
        path=path,
    )


def _out_of_range(value: Any, path: str, low: int, high: int) -> InvalidMessageError:
    return InvalidMessageError(
        f"{_short(value)} is outside {low}..{high}", reason="out_of_range", path=path
    )


def _too_large(size: int, limit: int) -> InvalidMessageError:
    return InvalidMessageError(
        f"body is {size} bytes, above the limit of {limit}", reason="too_large"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
