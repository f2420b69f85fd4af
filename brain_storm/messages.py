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
from datetime import UTC, datetime, timedelta
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
_CAPITAL = re.compile(r"(?<=[^_])([A-Z])")
_snake_cache: dict[str, str] = {}
_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d{1,9}))?"
    r"(?P<offset>[Zz]|[+-]\d{2}:\d{2})\Z"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_MAX_DIGITS = 40  # far above 2**64; longer decimal strings are out of range


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
        # Characters are 1 to 4 bytes: count bytes only when it can matter.
        if len(data) * 4 > max_message_bytes:
            size = len(data.encode("utf-8", "surrogatepass"))
            if size > max_message_bytes:
                raise _too_large(size, max_message_bytes)
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
    except ValueError as error:  # an integer of thousands of digits
        raise InvalidMessageError(
            f"body holds a number that cannot be read: {error}",
            reason="out_of_range",
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
        if not isinstance(key, str):
            raise InvalidMessageError(
                f"key {key!r} is not a string", reason="bad_key", path=path
            )
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
    if isinstance(value, str) and _RFC3339.match(value):
        return _parse_rfc3339(value, path)
    if isinstance(value, str) and not _is_decimal(value or "x"):
        raise InvalidMessageError(
            f"datetime {_short(value)} is neither milliseconds since the epoch "
            "nor RFC 3339 with a UTC offset",
            reason="bad_value",
            path=path,
        )
    return _parse_int(value, path, 0, MAX_DATETIME_MS)


def _parse_rfc3339(value: str, path: str) -> int:
    match = _RFC3339.match(value)
    assert match is not None
    date, fraction, offset = match.group("date", "fraction", "offset")
    fraction = fraction or ""
    # Protobuf writes 0, 3, 6 or 9 fraction digits: any digit past the third
    # must be zero, or the time is finer than a millisecond can hold.
    if fraction[3:].strip("0"):
        raise InvalidMessageError(
            f"datetime {value!r} is finer than milliseconds",
            reason="bad_value",
            path=path,
        )
    millis_part = int((fraction + "000")[:3])
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        moment = datetime.fromisoformat(f"{date[:10]}T{date[11:]}{offset}")
        millis = (moment - _EPOCH) // _ONE_MS + millis_part
    except (ValueError, OverflowError):
        raise InvalidMessageError(
            f"datetime {value!r} is not a valid date and time",
            reason="bad_value",
            path=path,
        ) from None
    if not 0 <= millis <= MAX_DATETIME_MS:
        raise _out_of_range(value, path, 0, MAX_DATETIME_MS)
    return millis


def _parse_int(value: Any, path: str, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise _wrong_type("an integer", value, path)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value and _is_decimal(value):
        if len(value.lstrip("-0")) > _MAX_DIGITS:
            raise _out_of_range(value, path, low, high)
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


def clean_value(value: Any, path: str = "$") -> Any:
    """Check a result value against the contract and snake_case its keys.

    Refused: NaN and infinities, integers outside signed 64 bits (send those as
    strings, as the protobuf JSON mapping does), NUL characters, empty keys,
    keys with '.' or a leading '$', two keys that snake_case to one name, and
    nesting deeper than MAX_DEPTH.
    """
    try:
        return _clean(value, 0)
    except _Refusal as refusal:
        where = path + "".join(reversed(refusal.trail))
        raise InvalidMessageError(
            refusal.message, reason=refusal.reason, path=where
        ) from None


class _Refusal(Exception):
    """A value breaks the contract; the path is collected while unwinding."""

    def __init__(self, message: str, reason: str) -> None:
        self.message = message
        self.reason = reason
        self.trail: list[str] = []


# Keys seen before and found valid, mapped to their snake_case name: the hot
# path of a saver that sees the same few keys millions of times.
_valid_keys: dict[str, str] = {}


def _clean(value: Any, depth: int) -> Any:
    kind = type(value)
    if kind is dict:
        if depth >= MAX_DEPTH:
            raise _Refusal(f"nested deeper than {MAX_DEPTH} levels", "too_deep")
        cleaned = {}
        for key, item in value.items():
            name = _valid_keys.get(key) or _check_key(key)
            if name in cleaned:
                raise _Refusal(
                    f"keys {key!r} and another both mean {name!r}", "duplicate_field"
                )
            try:
                cleaned[name] = _clean(item, depth + 1)
            except _Refusal as refusal:
                refusal.trail.append(f".{key}")
                raise
        return cleaned
    if kind is list:
        if depth >= MAX_DEPTH:
            raise _Refusal(f"nested deeper than {MAX_DEPTH} levels", "too_deep")
        cleaned_items = []
        for index, item in enumerate(value):
            try:
                cleaned_items.append(_clean(item, depth + 1))
            except _Refusal as refusal:
                refusal.trail.append(f"[{index}]")
                raise
        return cleaned_items
    if kind is str:
        problem = _string_problem(value)
        if problem:
            raise _Refusal(f"string holds {problem}", "bad_value")
    elif kind is float:
        if not math.isfinite(value):
            raise _Refusal(f"{value!r} is not a finite number", "bad_value")
    elif kind is int:
        if not I64_MIN <= value <= I64_MAX:
            raise _Refusal(
                "integer does not fit in 64 bits; send it as a string", "out_of_range"
            )
    elif value is not None and kind is not bool:
        raise _Refusal(f"expected a JSON value, got {type(value).__name__}", "bad_value")
    return value


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise _Refusal(f"key {key!r} is not a non-empty string", "bad_key")
    if key[0] == "$" or "." in key or _string_problem(key):
        raise _Refusal(
            f"key {key!r} holds '.', a leading '$', NUL or a lone surrogate", "bad_key"
        )
    name = snake_case(key)
    if len(_valid_keys) < 4096:
        _valid_keys[key] = name
    return name


def _string_problem(value: str) -> str:
    """Why ``value`` cannot be stored as text on every backend, or ``""``."""
    if "\x00" in value:
        return "a NUL character"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "a lone surrogate, which UTF-8 cannot hold"
    return ""


def _check_string(value: str, path: str) -> None:
    problem = _string_problem(value)
    if problem:
        raise InvalidMessageError(f"string holds {problem}", reason="bad_value", path=path)


def snake_case(key: str) -> str:
    """Undo protobuf's JSON camelCase: ``colorImage`` → ``color_image``.

    Each capital letter stands for ``_`` and its lower case, as protobuf made
    it (``colorRGB`` came from ``color_r_g_b``); snake_case keys pass as-is.
    """
    cached = _snake_cache.get(key)
    if cached is not None:
        return cached
    name = _CAPITAL.sub(r"_\1", key).lower()
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
