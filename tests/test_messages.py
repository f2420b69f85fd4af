"""The message contract: how parser output becomes a normalised Message.

Unit tests pin the documented examples; Hypothesis properties check that the
normaliser agrees with itself across the shapes and spellings a parser may
use (flat or nested, number or string, milliseconds or RFC 3339, str or
bytes), and that whatever it is given, it either returns a Message or raises
InvalidMessageError with a known reason, never any other exception.
"""

from __future__ import annotations

import json
import math
import string
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brain_storm.errors import InvalidMessageError
from brain_storm.messages import (
    I64_MAX,
    I64_MIN,
    MAX_DATETIME_MS,
    U64_MAX,
    Message,
    check_topic,
    clean_value,
    parse_datetime_ms,
    parse_message,
    parse_user_id,
    snake_case,
)

EXAMPLES = Path(__file__).parent.parent / "examples" / "messages"
REASONS = {
    "invalid_json", "not_an_object", "missing_field", "bad_value", "out_of_range",
    "bad_key", "duplicate_field", "unknown_field", "bad_topic", "too_large",
    "too_deep",
}
EPOCH = datetime(1970, 1, 1)
ONE_MS = timedelta(milliseconds=1)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999_000)
MAX_OFFSET_MIN = 23 * 60 + 59

# Modest budgets: the whole file runs in seconds on two cores.
PROPERTY = settings(max_examples=150, deadline=None)
FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# -- helpers ----------------------------------------------------------------


def refusal(call: Any, *args: Any, **kwargs: Any) -> str:
    """The reason ``call`` refuses its input; fails the test if it accepts it."""
    with pytest.raises(InvalidMessageError) as caught:
        call(*args, **kwargs)
    return caught.value.reason


def outcome(topic: str, data: Any, **options: Any) -> Message | str:
    """The Message made of ``data``, or the reason it was refused.

    Any exception but InvalidMessageError propagates and fails the test.
    """
    try:
        return parse_message(topic, data, **options)
    except InvalidMessageError as error:
        assert error.reason in REASONS
        return error.reason


def typed(value: Any) -> str:
    """``value`` as JSON text: equal only when types match too (1, 1.0, True)."""
    return json.dumps(value)


def camel(name: str) -> str:
    """``color_image`` → ``colorImage``, as the protobuf JSON mapping writes it."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def snake_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {snake_case(key): snake_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [snake_keys(item) for item in value]
    return value


def storable(text: str) -> bool:
    """Text every backend can hold: no NUL, and valid UTF-8 (no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def good_key(key: Any) -> bool:
    return (
        isinstance(key, str) and key != "" and key[0] != "$"
        and "." not in key and storable(key)
    )


def breaches(value: Any) -> set[str]:
    """Every reason the contract gives to refuse ``value``; empty when it is valid."""
    found: set[str] = set()
    if isinstance(value, dict):
        names = [snake_case(key) for key in value if good_key(key)]
        if len(set(names)) < len(names):
            found.add("duplicate_field")
        if not all(good_key(key) for key in value):
            found.add("bad_key")
        for item in value.values():
            found |= breaches(item)
    elif isinstance(value, list):
        for item in value:
            found |= breaches(item)
    elif isinstance(value, str) and not storable(value):
        found.add("bad_value")
    elif isinstance(value, float) and not math.isfinite(value):
        found.add("bad_value")
    elif isinstance(value, int) and not isinstance(value, bool):
        if not I64_MIN <= value <= I64_MAX:
            found.add("out_of_range")
    return found


def rfc3339(local: datetime, offset_min: int, fraction: str | None = None) -> str:
    """``local`` wall-clock time at ``offset_min`` minutes east of UTC."""
    if fraction is None:
        fraction = f"{local.microsecond // 1000:03d}"
    text = local.replace(microsecond=0).isoformat() + "." + fraction
    if offset_min == 0:
        return text + "Z"
    sign = "+" if offset_min > 0 else "-"
    hours, minutes = divmod(abs(offset_min), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


def local_time(datetime_ms: int, offset_min: int) -> datetime:
    """The wall-clock time of ``datetime_ms`` at the offset; OverflowError past 9999."""
    return EPOCH + timedelta(milliseconds=datetime_ms, minutes=offset_min)


# -- strategies -------------------------------------------------------------

user_ids = st.integers(0, U64_MAX)
datetimes_ms = st.integers(0, MAX_DATETIME_MS)
offsets_min = st.integers(-MAX_OFFSET_MIN, MAX_OFFSET_MIN)
# Not "user" (a topic of its own), nor a name that clashes with a flat
# message's own fields.
topics = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True).filter(
    lambda topic: topic not in ("user", "user_id", "datetime")
)
no_nul_text = st.text(
    st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=12
)
valid_keys = st.one_of(
    st.from_regex(r"[a-z]+([A-Z][a-z0-9]*){0,3}", fullmatch=True),
    st.from_regex(r"[a-z]+(_[a-z0-9]+){0,3}", fullmatch=True),
    st.text(st.characters(exclude_characters="\x00.", exclude_categories=("Cs",)),
            min_size=1, max_size=8),
).filter(good_key)
valid_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(I64_MIN, I64_MAX),
    st.floats(allow_nan=False, allow_infinity=False),
    no_nul_text,
)
valid_values = st.recursive(
    valid_leaves,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(valid_keys, children, max_size=4),
    max_leaves=12,
)
# Keys and leaves that break the contract, mixed with good ones, and keys that
# collide once snake_cased ("x" and "X", "userId" and "user_id").
any_keys = st.one_of(
    valid_keys,
    st.sampled_from(["", "$set", "a.b", "a\x00", "x", "X", "userId", "user_id"]),
    st.text(max_size=6),
)
any_leaves = st.one_of(
    valid_leaves,
    st.floats(),
    st.integers(-(2**70), 2**70),
    st.text(max_size=6),
)
any_values = st.recursive(
    any_leaves,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(any_keys, children, max_size=4),
    max_leaves=12,
)


@st.composite
def user_id_spellings(draw: st.DrawFn, user_id: int) -> Any:
    """``user_id`` as a parser may send it: a number or a decimal string."""
    choices: list[Any] = [user_id, str(user_id)]
    if user_id < 2**53:
        choices.append(float(user_id))
    return draw(st.sampled_from(choices))


@st.composite
def datetime_spellings(draw: st.DrawFn, datetime_ms: int) -> Any:
    """``datetime_ms`` as a number, a decimal string, or RFC 3339 at any offset."""
    kind = draw(st.sampled_from(["number", "string", "rfc3339"]))
    if kind == "number":
        return datetime_ms
    if kind == "string":
        return str(datetime_ms)
    offset_min = draw(offsets_min)
    try:
        local = local_time(datetime_ms, offset_min)
    except OverflowError:
        offset_min, local = 0, local_time(datetime_ms, 0)
    return rfc3339(local, offset_min)


@st.composite
def result_keys(draw: st.DrawFn, topic: str) -> str:
    """The key a parser files a result under: ``color_image`` or ``colorImage``."""
    spellings = [topic]
    if snake_case(camel(topic)) == topic:
        spellings.append(camel(topic))
    return draw(st.sampled_from(spellings))


# -- snake_case ---------------------------------------------------------------


@pytest.mark.parametrize("key, name", [
    ("colorImage", "color_image"),
    ("depthImage", "depth_image"),
    ("userId", "user_id"),
    ("userID", "user_i_d"),  # protobuf's JSON name of a field user_i_d
    ("x2Y", "x2_y"),
    ("already_snake", "already_snake"),
    ("lower", "lower"),
    ("X", "x"),
])
def test_snake_case_turns_camel_case_keys_into_snake_case(key: str, name: str) -> None:
    assert snake_case(key) == name


@PROPERTY
@given(st.text(max_size=30))
def test_snake_case_is_idempotent(key: str) -> None:
    once = snake_case(key)
    assert snake_case(once) == once


@PROPERTY
@given(st.text(max_size=30))
def test_snake_case_leaves_no_ascii_capital(key: str) -> None:
    assert not set(snake_case(key)) & set(string.ascii_uppercase)


@PROPERTY
@given(st.from_regex(r"[a-z][a-z0-9]*(_[a-z][a-z0-9]+){0,4}", fullmatch=True))
def test_snake_case_undoes_the_protobuf_camel_case_of_a_field_name(name: str) -> None:
    # Segments of two characters or more: single letters are the next test.
    assert snake_case(name) == name
    assert snake_case(camel(name)) == name


@pytest.mark.parametrize("name", ["color_r_g_b", "pos_x_y", "a_b_c"])
def test_snake_case_undoes_the_camel_case_of_single_letter_segments(name: str) -> None:
    # protobuf writes color_r_g_b as colorRGB: one capital, one underscore.
    assert snake_case(camel(name)) == name


# -- user ids -----------------------------------------------------------------


@PROPERTY
@given(user_ids)
def test_any_uint64_user_id_parses_exactly_as_a_number_or_a_decimal_string(
    user_id: int,
) -> None:
    # Given the id as a JSON number and as a decimal string, under either key
    bodies = [
        json.dumps({key: spelling, "datetime": 1, "pose": {"x": 1}})
        for key in ("userId", "user_id")
        for spelling in (user_id, str(user_id))
    ]

    # When each body is parsed, as text and as bytes
    parsed = [parse_message("pose", body).user_id for body in bodies]
    parsed += [parse_message("pose", body.encode()).user_id for body in bodies]

    # Then every one is the same exact int
    assert parsed == [user_id] * len(parsed)
    assert parse_user_id(user_id) == parse_user_id(str(user_id)) == user_id


@PROPERTY
@given(st.one_of(st.integers(U64_MAX + 1, 10**30), st.integers(-(10**30), -1)))
def test_user_ids_outside_uint64_are_out_of_range_as_numbers_and_as_strings(
    user_id: int,
) -> None:
    assert refusal(parse_user_id, user_id) == "out_of_range"
    assert refusal(parse_user_id, str(user_id)) == "out_of_range"


@pytest.mark.parametrize("value, user_id", [
    (0, 0),
    ("0", 0),
    ("007", 7),
    (7.0, 7),
    (2**53 - 1.0, 2**53 - 1),
    ("18446744073709551615", U64_MAX),
    (U64_MAX, U64_MAX),
])
def test_user_id_spellings_that_are_accepted(value: Any, user_id: int) -> None:
    assert parse_user_id(value) == user_id


@pytest.mark.parametrize("value", [
    True, None, 1.5, 2.0**64, "", " 7", "7 ", "+7", "0x10", "1e3", "7.0", "\uff17",
    [7], {"id": 7},
])
def test_user_id_spellings_that_are_refused_as_bad_values(value: Any) -> None:
    assert refusal(parse_user_id, value) == "bad_value"


# -- datetimes ----------------------------------------------------------------


@PROPERTY
@given(datetimes_ms)
def test_milliseconds_parse_the_same_as_a_number_and_a_decimal_string(
    datetime_ms: int,
) -> None:
    assert parse_datetime_ms(datetime_ms) == datetime_ms
    assert parse_datetime_ms(str(datetime_ms)) == datetime_ms


@PROPERTY
@given(datetimes_ms, offsets_min, st.integers(0, 6))
def test_rfc3339_at_any_offset_agrees_with_the_millisecond_number(
    datetime_ms: int, offset_min: int, extra_zeros: int
) -> None:
    # Given the same instant written at some offset, with 3 to 9 fraction digits
    try:
        local = local_time(datetime_ms, offset_min)
    except OverflowError:
        local, offset_min = local_time(datetime_ms, 0), 0
    fraction = f"{datetime_ms % 1000:03d}" + "0" * extra_zeros
    text = rfc3339(local, offset_min, fraction)

    # Then it parses to the millisecond number
    assert parse_datetime_ms(text) == datetime_ms


@pytest.mark.parametrize("text, datetime_ms", [
    ("2019-12-04T08:08:07.339Z", 1_575_446_887_339),
    ("2019-12-04T10:08:07.339+02:00", 1_575_446_887_339),
    ("2019-12-04T02:38:07.339-05:30", 1_575_446_887_339),
    ("2019-12-04T08:08:07Z", 1_575_446_887_000),
    ("2019-12-04T08:08:07.3Z", 1_575_446_887_300),
    ("2019-12-04T08:08:07.339000000Z", 1_575_446_887_339),
    ("1970-01-01T00:00:00.000Z", 0),
    ("9999-12-31T23:59:59.999Z", MAX_DATETIME_MS),
])
def test_rfc3339_examples_parse_to_milliseconds(text: str, datetime_ms: int) -> None:
    assert parse_datetime_ms(text) == datetime_ms


def test_rfc3339_in_lower_case_parses_like_upper_case() -> None:
    # RFC 3339, section 5.6: "T" and "Z" may alternatively be "t" and "z".
    assert parse_datetime_ms("2019-12-04t08:08:07.339z") == 1_575_446_887_339


@PROPERTY
@given(datetimes_ms, offsets_min, st.integers(1, 999_999))
def test_datetimes_finer_than_milliseconds_are_refused(
    datetime_ms: int, offset_min: int, below_ms_ns: int
) -> None:
    # Given an instant with a non-zero part below the millisecond, written in
    # microseconds or nanoseconds as the protobuf JSON mapping does
    try:
        local = local_time(datetime_ms, offset_min)
    except OverflowError:
        local, offset_min = local_time(datetime_ms, 0), 0
    tail = f"{below_ms_ns:06d}".rstrip("0")
    text = rfc3339(local, offset_min, f"{datetime_ms % 1000:03d}{tail}")

    # Then it is refused rather than rounded or truncated
    assert refusal(parse_datetime_ms, text) == "bad_value"


@pytest.mark.parametrize("text", [
    "2019-12-04T08:08:07.3391Z",
    "2019-12-04T08:08:07.339001Z",
    "2019-12-04T08:08:07.339000001Z",
    "2019-12-04T08:08:07.339999999+02:00",
])
def test_sub_millisecond_examples_are_refused(text: str) -> None:
    assert refusal(parse_datetime_ms, text) == "bad_value"


near_the_ends = st.sampled_from([EPOCH, datetime(1, 1, 1), LATEST]).flatmap(
    lambda end: st.integers(-2 * 86_400_000, 2 * 86_400_000).map(
        lambda delta_ms: (end, delta_ms)
    )
)


@PROPERTY
@given(near_the_ends, offsets_min)
def test_rfc3339_outside_the_range_is_refused_as_out_of_range(
    end_and_delta: tuple[datetime, int], offset_min: int
) -> None:
    # Given a wall-clock time near the ends of what RFC 3339 can write, at an
    # offset that may push the instant outside 1970..9999 in UTC
    end, delta_ms = end_and_delta
    try:
        local = end + delta_ms * ONE_MS
    except OverflowError:
        local = end
    datetime_ms = (local - EPOCH) // ONE_MS - offset_min * 60_000
    text = rfc3339(local, offset_min)

    # Then it parses to its instant when in range, and is out_of_range otherwise
    if 0 <= datetime_ms <= MAX_DATETIME_MS:
        assert parse_datetime_ms(text) == datetime_ms
    else:
        assert refusal(parse_datetime_ms, text) == "out_of_range"


@pytest.mark.parametrize("text", [
    "1969-12-31T23:59:59.999Z",
    "1970-01-01T00:30:00.000+01:00",
    "9999-12-31T23:59:59.999-01:00",
    "0001-01-01T00:30:00.000+01:00",
])
def test_rfc3339_examples_outside_the_range_are_out_of_range(text: str) -> None:
    assert refusal(parse_datetime_ms, text) == "out_of_range"


@pytest.mark.parametrize("value, reason", [
    ("2019-12-04T08:08:07.339", "bad_value"),  # no offset
    ("2019-12-04T25:08:07Z", "bad_value"),
    ("yesterdayT", "bad_value"),
    (-1, "out_of_range"),
    (MAX_DATETIME_MS + 1, "out_of_range"),
    (1.5, "bad_value"),
    (True, "bad_value"),
    (None, "bad_value"),
])
def test_bad_datetimes_are_refused(value: Any, reason: str) -> None:
    assert refusal(parse_datetime_ms, value) == reason


# -- result values --------------------------------------------------------------


def check_result_round_trip(topic: str, value: Any) -> None:
    """``value`` sent as a flat message comes back snake_cased, or is refused."""
    body = json.dumps({"userId": "7", "datetime": "1600000000123", topic: value})
    expected = breaches(value)
    if expected:
        assert refusal(parse_message, topic, body) in expected
        return
    message = parse_message(topic, body)
    assert typed(message.result) == typed(snake_keys(value))


@PROPERTY
@given(topics, valid_values)
def test_valid_result_values_round_trip_through_json_apart_from_snake_cased_keys(
    topic: str, value: Any
) -> None:
    check_result_round_trip(topic, value)


@FUZZ
@given(topics, any_values)
def test_result_values_that_break_the_contract_are_refused_with_a_reason_they_earn(
    topic: str, value: Any
) -> None:
    check_result_round_trip(topic, value)


@FUZZ
@given(any_values)
def test_clean_value_of_a_python_value_agrees_with_its_json_round_trip(
    value: Any,
) -> None:
    expected = breaches(value)
    if expected:
        assert refusal(clean_value, value) in expected
    else:
        assert typed(clean_value(value)) == typed(snake_keys(value))


@pytest.mark.parametrize("value, reason", [
    ({"$set": 1}, "bad_key"),
    ({"a.b": 1}, "bad_key"),
    ({"": 1}, "bad_key"),
    ({"a\x00": 1}, "bad_key"),
    ({1: 1}, "bad_key"),
    ({"colorImage": 1, "color_image": 2}, "duplicate_field"),
    ({"a": "x\x00y"}, "bad_value"),
    ([math.nan], "bad_value"),
    ({"a": -math.inf}, "bad_value"),
    ({"a": 2**63}, "out_of_range"),
    ({"a": -(2**63) - 1}, "out_of_range"),
    ({"a": (1, 2)}, "bad_value"),
    ({"a": {1, 2}}, "bad_value"),
])
def test_clean_value_refuses_what_a_database_could_not_store(
    value: Any, reason: str
) -> None:
    assert refusal(clean_value, value) == reason


def test_clean_value_keeps_the_64_bit_boundaries_and_every_json_type() -> None:
    value = {"lo": I64_MIN, "hi": I64_MAX, "f": 5e-324, "n": None, "b": False,
             "s": "ünï ✓ $.", "l": [[], {}], "nestedKey": {"innerKey": 1.0}}
    expected = {**value, "nested_key": {"inner_key": 1.0}}
    del expected["nestedKey"]
    assert typed(clean_value(value)) == typed(expected)


def test_nesting_is_refused_at_the_same_depth_in_both_shapes() -> None:
    for depth in range(28, 36):
        value: Any = 1
        for _ in range(depth):
            value = {"a": value}
        flat = outcome("pose", {"userId": 1, "datetime": 1, "pose": value})
        nested = outcome("pose", {"user": {"userId": 1}, "snapshot": {"datetime": 1},
                                  "result": {"pose": value}})
        assert flat == nested
    assert flat == "too_deep"


# -- message shapes -------------------------------------------------------------


@PROPERTY
@given(st.data(), topics, user_ids, datetimes_ms, valid_values)
def test_flat_and_nested_shapes_of_one_result_give_equal_messages(
    data: st.DataObject, topic: str, user_id: int, datetime_ms: int, result: Any
) -> None:
    # Given one (user, datetime, topic, result), spelled independently in each shape
    flat = {
        "userId": data.draw(user_id_spellings(user_id)),
        "datetime": data.draw(datetime_spellings(datetime_ms)),
        data.draw(result_keys(topic)): result,
    }
    nested = {
        "user": {"userId": data.draw(user_id_spellings(user_id))},
        "snapshot": {"datetime": data.draw(datetime_spellings(datetime_ms))},
        "result": {data.draw(result_keys(topic)): result},
    }

    # When both are parsed from JSON
    from_flat = outcome(topic, json.dumps(flat))
    from_nested = outcome(topic, json.dumps(nested))

    # Then they are equal messages (or refused for the same reason)
    assert from_flat == from_nested
    if isinstance(from_flat, Message):
        assert (from_flat.user_id, from_flat.datetime_ms) == (user_id, datetime_ms)
        assert typed(from_flat.result) == typed(from_nested.result)


def test_the_raw_field_holds_exactly_what_was_given() -> None:
    body = b'{"userId": "7", "datetime": 1, "pose": {"x": 1}}'
    text = body.decode()
    assert parse_message("pose", body).raw is body
    assert parse_message("pose", text).raw is text
    assert parse_message("pose", body) == parse_message("pose", text)


def test_a_flat_message_with_several_fields_keeps_them_all_as_its_result() -> None:
    message = parse_message(
        "pose", {"userId": 1, "datetime": 2, "pose": {"x": 1}, "extraField": True}
    )
    assert message.result == {"pose": {"x": 1}, "extra_field": True}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*/*.json")),
                         ids=lambda path: f"{path.parent.name}/{path.name}")
def test_every_example_message_parses(path: Path) -> None:
    message = parse_message(path.parent.name, path.read_bytes())
    assert message.topic == path.parent.name
    assert 0 <= message.user_id <= U64_MAX


def test_the_nested_example_carries_its_user_fields() -> None:
    message = parse_message("pose", (EXAMPLES / "pose" / "nested.json").read_bytes())
    assert message.user == {"username": "Dan Gittik"}
    assert (message.user_id, message.datetime_ms) == (42, 1_575_446_887_412)
    assert set(message.result) == {"translation", "rotation"}


@pytest.mark.parametrize("body", [
    {"userId": "5", "username": "dan", "birthday": 699746400, "gender": "MALE"},
    {"user": {"userId": "5", "username": "dan", "birthday": "699746400",
              "gender": 0}},
    {"user_id": 5, "Username": "dan", "birthday": 699746400, "gender": "male"},
])
def test_user_messages_in_any_shape_give_the_same_user(body: dict) -> None:
    message = parse_message("user", json.dumps(body))
    assert message == Message(
        "user", 5, None, {"username": "dan", "birthday": 699746400, "gender": "MALE"}
    )


@pytest.mark.parametrize("body, reason", [
    ({"userId": 5, "password": "x"}, "unknown_field"),
    ({"userId": 5, "username": "a", "Username": "b"}, "duplicate_field"),
    ({"userId": 5, "username": 7}, "bad_value"),
    ({"userId": 5, "username": "a\x00"}, "bad_value"),
    ({"userId": 5, "gender": 3}, "bad_value"),
    ({"userId": 5, "gender": True}, "bad_value"),
    ({"userId": 5, "birthday": 2**63}, "out_of_range"),
    ({"userId": 5, "user_id": 5}, "duplicate_field"),
    ({"username": "a"}, "missing_field"),
    ({"user": 5}, "bad_value"),
])
def test_bad_user_messages_are_refused(body: dict, reason: str) -> None:
    assert refusal(parse_message, "user", json.dumps(body)) == reason


@pytest.mark.parametrize("body, reason", [
    ({"user": {"userId": 1}, "result": {"pose": 1}}, "missing_field"),
    ({"user": {"userId": 1}, "snapshot": {"datetime": 1}}, "missing_field"),
    ({"user": 1, "snapshot": {"datetime": 1}, "result": {}}, "bad_value"),
    ({"user": {"userId": 1}, "snapshot": {}, "result": {}}, "missing_field"),
    ({"user": {"userId": 1}, "snapshot": {"datetime": 1, "id": 2}, "result": {}},
     "unknown_field"),
    ({"user": {"userId": 1, "age": 3}, "snapshot": {"datetime": 1}, "result": {}},
     "unknown_field"),
])
def test_bad_nested_messages_are_refused(body: dict, reason: str) -> None:
    assert refusal(parse_message, "pose", json.dumps(body)) == reason


# -- topics -----------------------------------------------------------------------


@PROPERTY
@given(st.one_of(st.text(max_size=70), st.from_regex(r"[a-z][a-z0-9_]{0,70}",
                                                     fullmatch=True)))
def test_a_topic_is_accepted_exactly_when_it_is_a_simple_name(topic: str) -> None:
    simple = (
        0 < len(topic) <= 63 and topic[0] in string.ascii_lowercase
        and set(topic) <= set(string.ascii_lowercase + string.digits + "_")
    )
    if simple:
        assert check_topic(topic) == topic
    else:
        assert refusal(check_topic, topic) == "bad_topic"


# -- anything at all ----------------------------------------------------------------


@FUZZ
@given(st.sampled_from(["pose", "user", "color_image"]), st.binary(max_size=200))
def test_any_bytes_give_a_message_or_an_invalid_message_error(
    topic: str, body: bytes
) -> None:
    outcome(topic, body)


json_tokens = st.sampled_from([
    "{", "}", "[", "]", ":", ",", " ", '"userId"', '"user_id"', '"datetime"',
    '"pose"', '"user"', '"snapshot"', '"result"', '"username"', '"gender"',
    '"birthday"', "0", "-1", "7", "1.5", "1e999", "-0", "18446744073709551616",
    "NaN", "Infinity", "null", "true", '"x"', '"7"', '"\\u0000"', '"\\ud800"',
    '"$set"', '"a.b"', '"2019-12-04T08:08:07.339Z"', '"9999-12-31T23:59:59Z"',
    '"MALE"', "\\", '"',
])


@FUZZ
@given(st.sampled_from(["pose", "user"]), st.lists(json_tokens, max_size=40))
def test_any_json_ish_text_gives_a_message_or_an_invalid_message_error(
    topic: str, tokens: list[str]
) -> None:
    text = "".join(tokens)
    outcome(topic, text)
    outcome(topic, text.encode())


message_like = st.fixed_dictionaries(
    {},
    optional={
        "userId": st.one_of(user_ids.map(str), any_leaves),
        "datetime": st.one_of(datetimes_ms, any_leaves),
        "pose": any_values,
        "username": any_leaves,
        "gender": any_leaves,
        "user": st.dictionaries(any_keys, any_leaves, max_size=4),
        "snapshot": st.dictionaries(any_keys, any_leaves, max_size=3),
        "result": any_values,
    },
)


@FUZZ
@given(st.sampled_from(["pose", "user"]), message_like,
       st.dictionaries(st.one_of(any_keys, st.integers()), any_leaves, max_size=2))
def test_any_message_like_dict_gives_a_message_or_an_invalid_message_error(
    topic: str, body: dict, extra: dict
) -> None:
    # Given a body close to a real message, plus odd keys a Python caller may use
    body = {**extra, **body}

    # Then as a dict, and as JSON text when it has one, it parses or is refused
    outcome(topic, body)
    if all(isinstance(key, str) for key in body):
        outcome(topic, json.dumps(body))


@FUZZ
@given(st.sampled_from(["pose", "user"]), message_like, st.booleans(),
       st.integers(16, 400))
def test_str_and_bytes_of_one_body_get_the_same_outcome(
    topic: str, body: dict, ensure_ascii: bool, max_message_bytes: int
) -> None:
    text = json.dumps(body, ensure_ascii=ensure_ascii)
    assert outcome(topic, text, max_message_bytes=max_message_bytes) == outcome(
        topic, text.encode(), max_message_bytes=max_message_bytes
    )


HUGE_INT = "9" * 5000
ODD_INPUTS = [
    ("5000-digit result", "pose",
     '{"userId": 1, "datetime": 1, "pose": ' + HUGE_INT + "}",
     {"out_of_range", "invalid_json"}),
    ("5000-digit user id", "pose",
     '{"userId": ' + HUGE_INT + ', "datetime": 1, "pose": 1}',
     {"out_of_range", "invalid_json"}),
    ("5000-digit datetime", "pose",
     '{"userId": 1, "datetime": ' + HUGE_INT + ', "pose": 1}',
     {"out_of_range", "invalid_json"}),
    ("datetime past 9999 in UTC", "pose",
     '{"userId": 1, "datetime": "9999-12-31T23:59:59.999-01:00", "pose": 1}',
     {"out_of_range"}),
    ("datetime before year 1 in UTC", "pose",
     '{"userId": 1, "datetime": "0001-01-01T00:30:00+01:00", "pose": 1}',
     {"out_of_range"}),
    ("int key in a user dict", "user", {"userId": 1, 5: "x"},
     {"bad_key", "unknown_field"}),
]


@pytest.mark.parametrize("name, topic, data, reasons", ODD_INPUTS,
                         ids=[case[0] for case in ODD_INPUTS])
def test_odd_inputs_raise_invalid_message_error_and_nothing_else(
    name: str, topic: str, data: Any, reasons: set[str]
) -> None:
    assert refusal(parse_message, topic, data) in reasons


def test_an_oversized_str_with_a_lone_surrogate_is_too_large() -> None:
    text = '"\ud800' + "x" * 100
    assert refusal(parse_message, "pose", text, max_message_bytes=64) == "too_large"


def test_a_str_body_is_limited_by_its_utf8_size_like_bytes() -> None:
    # Given a body of 110 characters but 310 UTF-8 bytes, and a 200-byte limit
    text = '{"userId": 1, "datetime": 1, "p": "' + "✓" * 100 + '"}'
    assert len(text) <= 200 < len(text.encode())

    # Then it is too large however it is given
    assert refusal(parse_message, "pose", text.encode(), max_message_bytes=200) == (
        "too_large")
    assert refusal(parse_message, "pose", text, max_message_bytes=200) == "too_large"
