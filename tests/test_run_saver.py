"""run-saver end to end: a real RabbitMQ, real databases, a real saver process.

Each test publishes to an exchange and queue of its own, runs
``python -m brain_storm.saver run-saver`` as a subprocess with its URLs in the
environment, plays a fault, and then asserts what was saved, what was
dead-lettered, and that nothing was lost or saved twice.  PostgreSQL and
RabbitMQ are Debian's servers; MongoDB is played by SecantusDB.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pika
import psycopg
import pytest
from factory import realistic
from harness import (
    SaverProcess,
    Topology,
    body,
    declare_queue,
    declare_saver_queue,
    drain,
    publish,
    ready_count,
    result_count,
    wait_until,
)
from servers import PASSWORD
from test_contract import dump

from brain_storm.saver import Saver

pytestmark = pytest.mark.slow


def expected_results(items: list[tuple[str, bytes]]) -> int:
    return sum(1 for topic, _ in items if topic != "user")


@pytest.fixture
def topology() -> Topology:
    return Topology()


@pytest.fixture
def saver_for(rabbitmq: Any, topology: Topology, tmp_path: Path) -> Any:
    started: list[SaverProcess] = []

    def make(database_url: str, *args: str) -> SaverProcess:
        log = tmp_path / f"saver-{len(started)}.log"
        process = SaverProcess(database_url, rabbitmq.url, topology, log, *args)
        started.append(process)
        return process

    yield make
    for process in started:
        if not process.exited():
            process.kill()
        process.assert_no_secret_logged()


@pytest.fixture
def saver_mid_stream(rabbitmq: Any, topology: Topology, saver_for: Any) -> Any:
    """A saver started on a full queue, returned once its first batch is saved."""

    def make(database_url: str, items: list[tuple[str, bytes]], *args: str) -> Any:
        declare_saver_queue(rabbitmq.url, topology)
        publish(rabbitmq.url, topology.exchange, items)
        saver = saver_for(database_url, *args).start()
        wait_until(lambda: result_count(database_url) > 0, what="a first batch")
        return saver

    return make


def test_every_topic_is_saved_exactly_once(
    database_url: str, rabbitmq: Any, topology: Topology, saver_for: Any,
    database_url_for: Any,
) -> None:
    # Given realistic messages of every topic, in both shapes, on the queue
    items = realistic(3000, seed=11)
    saver = saver_for(database_url).start()
    saver.wait_ready()
    publish(rabbitmq.url, topology.exchange, items)

    # When the saver has consumed them
    wait_until(lambda: result_count(database_url) == expected_results(items),
               what="every result to be saved")
    wait_until(lambda: saver.metric("brain_storm_saver_messages_saved_total")
               == len(items), what="every message to be counted")

    # Then the database holds exactly what saving them directly gives
    with Saver(database_url) as saved, Saver(database_url_for("sqlite")) as direct:
        direct.save_many(items)
        assert dump(saved) == dump(direct)
    assert drain(rabbitmq.url, topology.dead_letter_queue) == []
    assert saver.metric("brain_storm_saver_messages_dead_lettered_total") == 0
    assert saver.stop() == 0


POISON = [
    ("pose", b"{not json", "invalid_json"),
    ("pose", b"[1, 2, 3]", "not_an_object"),
    ("feelings", b'{"datetime": "1", "feelings": {}}', "missing_field"),
    ("pose", b'{"userId": "1", "datetime": "1", "pose": {"x": NaN}}', "bad_value"),
    ("pose", b'{"userId": "1", "datetime": "1", "pose": {"s": "a\\u0000b"}}',
     "bad_value"),
    ("pose", b'{"userId": "99999999999999999999", "datetime": "1", "pose": {}}',
     "out_of_range"),
    ("pose", b'{"userId": "1", "datetime": "1", "pose": {"a.b": 1}}', "bad_key"),
    ("pose", b'{"userId": "1", "datetime": "1", "pose": "' + b"x" * 20_000 + b'"}',
     "too_large"),
    ("Not-A-Topic", b'{"userId": "1", "datetime": "1", "x": 1}', "bad_topic"),
]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mongodb"])
def test_poison_is_dead_lettered_with_its_reason_and_the_rest_is_saved(
    backend: str, database_url_for: Any, rabbitmq: Any, topology: Topology,
    saver_for: Any,
) -> None:
    # Given poison messages mixed among valid ones
    database_url = database_url_for(backend)
    good = realistic(600, seed=5)
    items = good[:300] + [(t, b) for t, b, _ in POISON] + good[300:]
    saver = saver_for(database_url, "--max-message-bytes", "10000").start()
    saver.wait_ready()
    publish(rabbitmq.url, topology.exchange, items)

    # When they have been consumed
    wait_until(lambda: result_count(database_url) == expected_results(good),
               what="every valid result to be saved")
    wait_until(lambda: saver.metric(
        "brain_storm_saver_messages_dead_lettered_total") == len(POISON),
        what="the poison to be dead-lettered")

    # Then each poison message sits in the dead-letter queue, saying why
    dead = drain(rabbitmq.url, topology.dead_letter_queue)
    assert sorted(body for _, body, _ in dead) == sorted(b for _, b, _ in POISON)
    reasons = {body: props.headers["x-brain-storm-reason"] for props, body, _ in dead}
    assert reasons == {b: reason for _, b, reason in POISON}
    for properties, _, routing_key in dead:
        headers = properties.headers
        assert headers["x-brain-storm-routing-key"] == routing_key
        assert headers["x-brain-storm-error"] == "InvalidMessageError"
        assert headers["x-brain-storm-failed-at"].endswith("+00:00")
        assert headers["x-brain-storm-detail"]
        assert properties.delivery_mode == 2
    # And the queue is empty: nothing poisoned it
    assert ready_count(rabbitmq.url, topology.queue) == 0
    assert saver.stop() == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mongodb"])
def test_sigkill_mid_batch_loses_nothing_and_saves_nothing_twice(
    backend: str, database_url_for: Any, rabbitmq: Any, topology: Topology,
    saver_for: Any, saver_mid_stream: Any,
) -> None:
    # Given a saver killed while batches are in flight
    database_url = database_url_for(backend)
    items = realistic(8000, seed=7)
    first = saver_mid_stream(database_url, items)
    first.kill()
    saved_before = result_count(database_url)

    # When a new saver takes over
    second = saver_for(database_url).start()
    wait_until(lambda: result_count(database_url) == expected_results(items),
               what="every result to be saved")

    # Then everything is saved once, with the right values, and nothing
    # was dead-lettered
    assert saved_before < expected_results(items), "the kill came too late"
    with Saver(database_url) as saved, Saver(f"sqlite:///{first.log_path}.db") as direct:
        direct.save_many(items)
        assert dump(saved) == dump(direct)
    wait_until(lambda: ready_count(rabbitmq.url, topology.queue) == 0,
               what="an empty queue")
    assert drain(rabbitmq.url, topology.dead_letter_queue) == []
    assert second.stop() == 0


def test_sigterm_mid_batch_drains_acknowledges_and_exits_zero(
    database_url_for: Any, rabbitmq: Any, topology: Topology, saver_for: Any,
    saver_mid_stream: Any,
) -> None:
    # Given a saver busy with a long queue
    database_url = database_url_for("postgresql")
    items = realistic(20000, seed=9)
    saver = saver_mid_stream(database_url, items)

    # When it is sent SIGTERM
    saver.signal(signal.SIGTERM)
    status = saver.wait()

    # Then it exits 0, having acknowledged exactly what it saved: every
    # message is either saved or still ready in the queue, none in limbo
    assert status == 0, saver.log()
    assert "draining" in saver.log() and "stopped" in saver.log()
    saved = result_count(database_url)
    users = sum(1 for topic, _ in items if topic == "user")
    assert saved < expected_results(items), "SIGTERM came after the last batch"
    # The broker returns what a closed channel held asynchronously: count the
    # queue once it holds nothing unacknowledged.
    wait_until(lambda: rabbitmq.queue_counts()[topology.queue][1] == 0,
               what="the broker to settle the closed channel")
    ready = ready_count(rabbitmq.url, topology.queue)
    consumed = len(items) - ready
    assert saved == consumed - users
    # And a restarted saver finishes the job
    saver_for(database_url).start()
    wait_until(lambda: result_count(database_url) == expected_results(items),
               what="the rest to be saved")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mongodb"])
def test_broker_restart_mid_stream_loses_nothing(
    backend: str, database_url_for: Any, rabbitmq: Any, topology: Topology,
    saver_for: Any, saver_mid_stream: Any,
) -> None:
    database_url = database_url_for(backend)
    items = realistic(12000, seed=13)
    saver = saver_mid_stream(database_url, items)

    # When the broker stops and starts again mid-stream
    rabbitmq.stop()
    wait_until(lambda: saver.get("/readyz")[0] == 503, what="readiness to drop")
    rabbitmq.start()

    # Then the saver reconnects by itself and saves everything exactly once
    wait_until(lambda: result_count(database_url) == expected_results(items),
               what="every result to be saved")
    wait_until(lambda: saver.get("/readyz")[0] == 200, what="readiness to return")
    assert saver.metric("brain_storm_saver_reconnects_total") >= 1
    assert "reconnecting" in saver.log()
    assert drain(rabbitmq.url, topology.dead_letter_queue) == []
    assert not saver.exited()
    assert saver.stop() == 0


def test_database_stopped_and_started_mid_stream_loses_nothing(
    postgres: Any, database_url_for: Any, rabbitmq: Any, topology: Topology,
    saver_for: Any, saver_mid_stream: Any,
) -> None:
    database_url = database_url_for("postgresql")
    items = realistic(12000, seed=17)
    saver = saver_mid_stream(database_url, items)

    # When PostgreSQL goes away for a while, then comes back
    postgres.stop()
    wait_until(lambda: saver.get("/readyz")[0] == 503, what="readiness to drop")
    time.sleep(3)
    postgres.start()

    # Then nothing was acknowledged or dead-lettered meanwhile, and all is saved
    wait_until(lambda: result_count(database_url) == expected_results(items),
               what="every result to be saved")
    assert saver.metric("brain_storm_saver_batch_retries_total") >= 1
    assert drain(rabbitmq.url, topology.dead_letter_queue) == []
    assert not saver.exited()
    assert saver.stop() == 0


def test_a_database_blocked_longer_than_the_heartbeat_keeps_the_connection(
    database_url_for: Any, rabbitmq: Any, topology: Topology, saver_for: Any,
) -> None:
    # Given a saver with a 2 s heartbeat, and a table locked for 10 s
    database_url = database_url_for("postgresql")
    saver = saver_for(database_url)
    saver.env["BRAIN_STORM_QUEUE_URL"] = rabbitmq.url + "?heartbeat=2"
    saver.start().wait_ready()
    items = realistic(500, seed=19)
    publish(rabbitmq.url, topology.exchange, items[:100])
    wait_until(lambda: result_count(database_url) > 0, what="a first batch")

    with psycopg.connect(database_url) as blocker:
        blocker.execute("LOCK TABLE results IN ACCESS EXCLUSIVE MODE")
        publish(rabbitmq.url, topology.exchange, items[100:])
        time.sleep(10)  # five heartbeat intervals with the flush stuck
        blocker.rollback()

    # Then the flush completes on the same connection: no reconnect
    wait_until(lambda: result_count(database_url) == expected_results(items),
               what="every result to be saved")
    assert saver.metric("brain_storm_saver_reconnects_total") == 0
    assert saver.stop() == 0


def test_a_queue_declared_with_other_arguments_is_a_clear_error(
    database_url_for: Any, rabbitmq: Any, topology: Topology, saver_for: Any,
) -> None:
    # Given the queue already exists as a classic queue
    declare_queue(rabbitmq.url, topology)
    # When the saver tries to declare it as a quorum queue
    saver = saver_for(database_url_for("sqlite")).start()
    # Then it exits 2 and says what is wrong and what to do
    assert saver.wait() == 2
    log = saver.log()
    assert topology.queue in log and "inequivalent arg" in log
    assert "choose another --queue" in log


def test_health_endpoints_and_metrics(
    database_url_for: Any, rabbitmq: Any, topology: Topology, saver_for: Any,
) -> None:
    saver = saver_for(database_url_for("sqlite")).start()
    saver.wait_ready()
    assert saver.get("/healthz") == (200, "ok\n")
    publish(rabbitmq.url, topology.exchange, [("pose", body("pose", 1, 1, {"x": 1}))])
    wait_until(lambda: saver.metric("brain_storm_saver_messages_saved_total") == 1,
               what="one saved message")
    _, text = saver.get("/metrics")
    assert 'brain_storm_saver_messages_consumed_total{topic="pose"} 1.0' in text
    assert "brain_storm_saver_flush_seconds_bucket" in text
    assert "saver:" not in text  # no URL, hence no user or password, in metrics
    assert saver.stop() == 0
    log = saver.log()
    for event in ("starting", "reachable", "consuming", "draining", "stopped"):
        assert event in log


def test_only_the_configured_topics_are_consumed(
    database_url_for: Any, rabbitmq: Any, topology: Topology, saver_for: Any,
) -> None:
    database_url = database_url_for("sqlite")
    saver = saver_for(database_url, "--topic", "pose", "--topic", "user").start()
    saver.wait_ready()
    publish(rabbitmq.url, topology.exchange, [
        ("pose", body("pose", 1, 1, {"x": 1})),
        ("feelings", body("feelings", 1, 1, {"thirst": 1})),
        ("user", json.dumps({"userId": "1", "username": "a"}).encode()),
    ])
    wait_until(lambda: saver.metric("brain_storm_saver_messages_saved_total") == 2,
               what="two saved messages")
    with Saver(database_url) as saved:
        assert saved.get_one_snapshot(1, 1)["results"] == ["pose"]
        assert saved.get_one_user(1)["username"] == "a"
    assert saver.stop() == 0


CRASHING_DRIVER = '''
"""A driver that kills its process on one message: a crash no code can catch."""
import os

from brain_storm.databases.sqlite_ import SQLiteDriver


class CrashingDriver(SQLiteDriver):
    @classmethod
    def from_url(cls, url):
        return cls(url.split("///", 1)[1])

    def save_messages(self, messages):
        if any(m.result == {"crash": True} for m in messages):
            os._exit(70)
        super().save_messages(messages)
'''


def test_a_message_that_crashes_the_saver_is_set_aside_by_the_delivery_limit(
    tmp_path: Path, rabbitmq: Any, topology: Topology, saver_for: Any,
) -> None:
    # Given a database driver (an installed plugin) that kills the process on
    # one message, and that message among valid ones
    plugin = tmp_path / "plugin"
    (plugin / "crashing-0.dist-info").mkdir(parents=True)
    (plugin / "crashing-0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: crashing\nVersion: 0\n")
    (plugin / "crashing-0.dist-info" / "entry_points.txt").write_text(
        "[brain_storm.databases]\ncrashing = crashing_driver:CrashingDriver\n")
    (plugin / "crashing_driver.py").write_text(CRASHING_DRIVER)
    database_path = tmp_path / "crash.sqlite3"
    database_url = f"crashing:///{database_path}"
    good = realistic(200, seed=23)
    crasher = ("pose", body("pose", 1, 1, {"crash": True}))
    items = good[:100] + [crasher] + good[100:]

    # When a supervisor restarts the saver each time it dies, as Kubernetes would
    exits = []
    for attempt in range(8):
        saver = saver_for(database_url, "--delivery-limit", "3")
        saver.env["PYTHONPATH"] = str(plugin)
        saver.start()
        if attempt == 0:
            saver.wait_ready()
            publish(rabbitmq.url, topology.exchange, items)
        wait_until(lambda saver=saver: saver.exited() or (
            result_count(f"sqlite:///{database_path}") == expected_results(good)
            and ready_count(rabbitmq.url, topology.dead_letter_queue) > 0),
            what="a crash, or every valid result saved and the crasher set aside")
        if not saver.exited():
            break
        exits.append(saver.wait())

    # Then the crasher was set aside by the broker after its delivery limit,
    # with the broker's reason, and every valid message was saved
    assert exits and set(exits) == {70}, exits
    assert result_count(f"sqlite:///{database_path}") == expected_results(good)
    dead = drain(rabbitmq.url, topology.dead_letter_queue)
    assert [b for _, b, _ in dead] == [crasher[1]]
    deaths = dead[0][0].headers["x-death"]
    assert deaths[0]["reason"] == "delivery_limit"
    saver.wait_ready()
    assert saver.stop() == 0


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "brain_storm.saver", *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_publishing_where_no_saver_listens_fails_instead_of_dropping(
    rabbitmq: Any, topology: Topology,
) -> None:
    # Given an exchange no queue is bound to, when the examples are published
    done = run_cli("publish", "-q", rabbitmq.url, "--exchange", topology.exchange,
                   "examples/messages")
    # Then the command says nothing consumes them, instead of reporting success
    assert done.returncode == 1
    assert "no queue is bound" in done.stderr and "start run-saver" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_an_unreachable_broker_is_one_line_without_the_password() -> None:
    done = run_cli("publish", "-q", f"amqp://u:{PASSWORD}@127.0.0.1:1/%2F",
                   "examples/messages")
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot reach RabbitMQ at amqp://u:***@")
    assert len(done.stderr.strip().splitlines()) == 1
    assert PASSWORD not in done.stdout + done.stderr


def test_bad_run_saver_settings_exit_2_with_one_line(
    rabbitmq: Any, database_url_for: Any,
) -> None:
    database_url = database_url_for("sqlite")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = run_cli("run-saver", database_url, rabbitmq.url, "--metrics-port", port)
    bad_topic = run_cli("run-saver", database_url, rabbitmq.url, "-t", "Pose")
    bad_env = run_cli("run-saver", database_url, rabbitmq.url,
                      env={"BRAIN_STORM_BATCH_SIZE": "many"})
    for done, says in ((busy, "cannot serve metrics"), (bad_topic, "'Pose'"),
                       (bad_env, "BRAIN_STORM_BATCH_SIZE")):
        assert done.returncode == 2, done.stderr
        assert says in done.stderr.strip().splitlines()[-1]
        assert "Traceback" not in done.stderr


def test_a_deleted_queue_is_declared_again_and_consumed(
    database_url_for: Any, rabbitmq: Any, topology: Topology, saver_for: Any,
) -> None:
    # Given a saver consuming, whose queue is deleted under it
    database_url = database_url_for("sqlite")
    saver = saver_for(database_url).start()
    saver.wait_ready()
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq.url))
    connection.channel().queue_delete(topology.queue)
    connection.close()

    # When the saver has noticed, and messages arrive
    wait_until(lambda: saver.log().count("consuming from") == 2,
               what="the saver to subscribe again")
    publish(rabbitmq.url, topology.exchange,
            [("pose", body("pose", 1, ms, {"x": ms})) for ms in range(1, 6)])

    # Then it declared the queue again, and saved them
    wait_until(lambda: result_count(database_url) == 5, what="five saved results")
    assert "cancelled the subscription" in saver.log()
    assert saver.stop() == 0


def test_sigterm_while_the_database_hangs_exits_within_the_bound_and_loses_nothing(
    database_url_for: Any, rabbitmq: Any, topology: Topology, saver_for: Any,
) -> None:
    # Given a saver whose flush hangs on a locked table
    database_url = database_url_for("postgresql")
    items = realistic(300, seed=29)
    saver = saver_for(database_url, "--drain-timeout-s", "2").start()
    saver.wait_ready()
    publish(rabbitmq.url, topology.exchange, items[:10])
    wait_until(lambda: result_count(database_url) > 0, what="a first batch")
    with psycopg.connect(database_url) as blocker:
        blocker.execute("LOCK TABLE results IN ACCESS EXCLUSIVE MODE")
        publish(rabbitmq.url, topology.exchange, items[10:])
        wait_until(lambda: saver.get("/metrics")[1].count("flush") and
                   ready_count(rabbitmq.url, topology.queue) == 0,
                   what="the rest to be delivered")

        # When it is sent SIGTERM, the lock still held
        saver.signal(signal.SIGTERM)

        # Then it exits before the lock is released, saying what it left
        assert saver.wait(timeout_s=60) == 0
        assert "left unacknowledged" in saver.log() or "still being written" in (
            saver.log())
        blocker.rollback()

    # And a new saver saves everything, once
    saver_for(database_url).start()
    wait_until(lambda: result_count(database_url) == expected_results(items),
               what="every result to be saved")
