"""One contract, three backends: SQLite, a real PostgreSQL, and MongoDB.

MongoDB is played by SecantusDB, a MongoDB wire-protocol server, since no
MongoDB server can run here.  Every test runs once per backend against a
fresh, empty database.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from factory import BASE_MS, message, realistic

from brain_storm.errors import (
    InvalidMessageError,
    NotFoundError,
    PermanentError,
    UnstorableError,
)
from brain_storm.saver import Saver

U64_MAX = 2**64 - 1


def dump(saver: Saver) -> dict[str, Any]:
    """Everything the read side can tell, as one comparable value."""
    everything: dict[str, Any] = {"users": saver.get_users()}
    for user in everything["users"]:
        user_id = user["user_id"]
        snapshots = []
        for summary in saver.get_snapshots(user_id):
            snapshot = saver.get_one_snapshot(user_id, summary["snapshot_id"])
            snapshot["values"] = {
                name: saver.get_result(user_id, snapshot["snapshot_id"], name)
                for name in snapshot["results"]
            }
            snapshots.append(snapshot)
        everything[str(user_id)] = {
            "user": saver.get_one_user(user_id), "snapshots": snapshots}
    return everything


def counts(everything: dict[str, Any]) -> tuple[int, int, int]:
    users = everything["users"]
    snapshots = [s for u in users for s in everything[str(u["user_id"])]["snapshots"]]
    results = sum(len(s["results"]) for s in snapshots)
    return len(users), len(snapshots), results


def test_realistic_messages_saved_twice_in_any_order_read_back_identically(
    database_url: str, database_url_for: Any
) -> None:
    # Given 1,000 realistic messages of every topic, in both shapes
    items = realistic(1000, seed=1)
    shuffled = items[:]
    random.Random(2).shuffle(shuffled)

    # When they are saved in order, then again shuffled, in batches
    with Saver(database_url) as saver:
        for start in range(0, len(items), 250):
            assert saver.save_many(items[start:start + 250]) == [None] * len(
                items[start:start + 250])
        once = dump(saver)
        assert saver.save_many(shuffled) == [None] * len(shuffled)
        twice = dump(saver)

    # Then nothing changed the second time, and every key is there once
    assert twice == once
    user_messages = sum(1 for topic, _ in items if topic == "user")
    assert counts(once)[2] == len(items) - user_messages
    # And a fresh SQLite database given the shuffled order agrees exactly
    with Saver(database_url_for("sqlite")) as reference:
        reference.save_many(shuffled)
        assert dump(reference) == once


def test_largest_user_id_as_string_and_number_is_one_exact_record(
    database_url: str,
) -> None:
    with Saver(database_url) as saver:
        saver.save("pose", message("pose", U64_MAX, BASE_MS, {"x": 1.0}, nested=False))
        saver.save("feelings", {"userId": U64_MAX, "datetime": BASE_MS,
                                "feelings": {"thirst": 0.5}})
        saver.save("user", {"userId": U64_MAX, "username": "max"})

        assert saver.get_users() == [{"user_id": U64_MAX, "username": "max"}]
        snapshot = saver.get_one_snapshot(str(U64_MAX), BASE_MS)
        assert snapshot["results"] == ["feelings", "pose"]
        assert saver.get_result(U64_MAX, BASE_MS, "feelings") == {"thirst": 0.5}


def test_users_sort_by_unsigned_id_across_the_signed_boundary(database_url: str) -> None:
    ids = [2**63, 0, U64_MAX, 2**63 - 1, 7]
    with Saver(database_url) as saver:
        for user_id in ids:
            saver.save("user", {"userId": str(user_id)})
        assert [u["user_id"] for u in saver.get_users()] == sorted(ids)


def test_later_user_message_merges_into_the_record(database_url: str) -> None:
    with Saver(database_url) as saver:
        saver.save("pose", message("pose", 5, BASE_MS, {"x": 1}, nested=True,
                                   username="first"))
        saver.save("user", {"userId": "5", "birthday": 699746400, "gender": 1})
        saver.save("user", {"userId": "5", "username": "dan"})
        saver.save("user", {"userId": "5"})
        assert saver.get_one_user(5) == {
            "user_id": 5, "username": "dan", "birthday": 699746400,
            "gender": "FEMALE",
        }


def test_datetimes_keep_milliseconds_in_utc(database_url: str) -> None:
    with Saver(database_url) as saver:
        saver.save("pose", {"userId": 1, "datetime": "2019-12-04T10:08:07.339+02:00",
                            "pose": {"x": 1}})
        assert saver.get_snapshots(1) == [
            {"snapshot_id": 1575446887339, "datetime": "2019-12-04T08:08:07.339Z"}]


def test_results_keep_their_values_exactly(database_url: str) -> None:
    value = {"f": 0.1, "big": 1e300, "tiny": 5e-324, "neg": -2.5, "i": 2**63 - 1,
             "n": None, "b": True, "s": "ünï ✓", "list": [1, [2.5, "x"], {}],
             "empty": {}}
    with Saver(database_url) as saver:
        saver.save("custom_topic", {"userId": 1, "datetime": 1, "data": value})
        stored = saver.get_result(1, 1, "custom_topic")
    assert stored == {"data": value}
    assert type(stored["data"]["big"]) is float


def test_missing_things_raise_one_not_found_error(database_url: str) -> None:
    with Saver(database_url) as saver:
        saver.save("pose", {"userId": 1, "datetime": BASE_MS, "pose": {"x": 1}})
        for call in (lambda: saver.get_one_user(2), lambda: saver.get_snapshots(2),
                     lambda: saver.get_one_snapshot(1, BASE_MS + 1),
                     lambda: saver.get_result(1, BASE_MS, "feelings"),
                     lambda: saver.get_result(1, BASE_MS + 1, "pose"),
                     lambda: saver.get_result(1, BASE_MS, "pose\x00"),
                     lambda: saver.get_result(1, BASE_MS, "Pose; drop")):
            with pytest.raises(NotFoundError):
                call()


BAD_MESSAGES = [
    ("not JSON", "pose", b"{not json", "invalid_json"),
    ("not UTF-8", "pose", b"\xff\xfe", "invalid_json"),
    ("not an object", "pose", b"[1, 2]", "not_an_object"),
    ("no user id", "pose", b'{"datetime": 1, "pose": {}}', "missing_field"),
    ("no datetime", "pose", b'{"userId": 1, "pose": {}}', "missing_field"),
    ("no result", "pose", b'{"userId": 1, "datetime": 1}', "missing_field"),
    ("negative id", "pose", b'{"userId": -1, "datetime": 1, "p": 1}', "out_of_range"),
    ("id above 2**64-1", "pose",
     b'{"userId": "18446744073709551616", "datetime": 1, "p": 1}', "out_of_range"),
    ("id a float", "pose", b'{"userId": 1.5, "datetime": 1, "p": 1}', "bad_value"),
    ("NaN", "pose", b'{"userId": 1, "datetime": 1, "p": NaN}', "bad_value"),
    ("Infinity", "pose", b'{"userId": 1, "datetime": 1, "p": -Infinity}', "bad_value"),
    ("overflowing float", "pose", b'{"userId": 1, "datetime": 1, "p": 1e999}',
     "bad_value"),
    ("NUL in a value", "pose", b'{"userId": 1, "datetime": 1, "p": "a\\u0000"}',
     "bad_value"),
    ("NUL in a key", "pose", b'{"userId": 1, "datetime": 1, "p": {"a\\u0000": 1}}',
     "bad_key"),
    ("dotted key", "pose", b'{"userId": 1, "datetime": 1, "p": {"a.b": 1}}', "bad_key"),
    ("dollar key", "pose", b'{"userId": 1, "datetime": 1, "p": {"$set": 1}}',
     "bad_key"),
    ("int above 64 bits", "pose", b'{"userId": 1, "datetime": 1, "p": 99999999999999999999}',
     "out_of_range"),
    ("bad topic", "Pose!", b'{"userId": 1, "datetime": 1, "p": 1}', "bad_topic"),
    ("topic with a dot", "a.b", b'{"userId": 1, "datetime": 1, "p": 1}', "bad_topic"),
    ("too large", "pose", b'{"userId": 1, "datetime": 1, "p": "' + b"x" * 2_000_000
     + b'"}', "too_large"),
    ("too deep", "pose", b'{"userId": 1, "datetime": 1, "p": ' + b'{"a":' * 40 + b"1"
     + b"}" * 40 + b"}", "too_deep"),
    ("unknown user field", "user", b'{"userId": 1, "password": "x"}', "unknown_field"),
    ("bad gender", "user", b'{"userId": 1, "gender": "ROBOT"}', "bad_value"),
]


@pytest.mark.parametrize("name, topic, body, reason", BAD_MESSAGES,
                         ids=[case[0] for case in BAD_MESSAGES])
def test_bad_input_is_refused_with_a_reason_and_saves_nothing(
    database_url_for: Any, name: str, topic: str, body: bytes, reason: str,
) -> None:
    with Saver(database_url_for("sqlite")) as saver:
        with pytest.raises(InvalidMessageError) as caught:
            saver.save(topic, body)
        assert caught.value.reason == reason
        assert saver.get_users() == []


def test_bad_input_policy_is_the_same_on_every_backend(database_url: str) -> None:
    # The policy is applied before any driver runs; this checks no backend
    # slips a refused message in anyway.
    with Saver(database_url) as saver:
        outcomes = saver.save_many([(topic, body) for _, topic, body, _ in BAD_MESSAGES])
        assert [o.reason for o in outcomes] == [case[3] for case in BAD_MESSAGES]
        assert saver.get_users() == []


def test_one_bad_message_never_sinks_its_batch(database_url: str) -> None:
    good = realistic(40, seed=3)
    items = good[:20] + [("pose", b"{"), ("pose", b'{"userId": 1}')] + good[20:]
    with Saver(database_url) as saver:
        outcomes = saver.save_many(items)
        refused = [i for i, outcome in enumerate(outcomes) if outcome is not None]
        assert refused == [20, 21]
        assert all(isinstance(outcomes[i], PermanentError) for i in refused)
        assert counts(dump(saver))[2] == sum(1 for t, _ in good if t != "user")


def test_a_value_the_database_refuses_is_isolated_from_its_batch(
    database_url_for: Any,
) -> None:
    # Given a database that refuses one value for good (a CHECK constraint added
    # by an operator, on PostgreSQL), and a batch holding it among good ones
    url = database_url_for("postgresql")
    import psycopg

    with Saver(url) as saver:
        saver.save("user", {"userId": 1})
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("ALTER TABLE results ADD CONSTRAINT no_poison "
                               "CHECK (data::text NOT LIKE '%poison%')")
        items = [("pose", json.dumps({"userId": 1, "datetime": ms,
                                      "pose": {"v": "poison" if ms == 3 else "ok"}}))
                 for ms in range(1, 6)]
        # When the batch is saved
        outcomes = saver.save_many(items)
        # Then only that message is refused, and the others are saved
        assert [type(o) for o in outcomes] == [type(None)] * 2 + [UnstorableError] + [
            type(None)] * 2
        assert [s["snapshot_id"] for s in saver.get_snapshots(1)] == [1, 2, 4, 5]
