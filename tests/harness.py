"""Drive ``run-saver`` as a real process, and the broker around it, for tests."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pika
from servers import PASSWORD, free_port

_ids = itertools.count()


def wait_until(condition: Callable[[], Any], *, timeout_s: float = 120,
               what: str = "condition") -> Any:
    """Poll ``condition`` until it is truthy; fail the test after ``timeout_s``.

    The timeout only guards against a hang; no test asserts on speed.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Topology:
    """Names of one test's exchange and queues, so tests never share messages."""

    def __init__(self) -> None:
        n = f"{os.getpid()}_{next(_ids)}"
        self.exchange = f"ex_{n}"
        self.queue = f"q_{n}"
        self.dead_letter_queue = f"{self.queue}.dead-letter"


def publish(amqp_url: str, exchange: str, items: Iterable[tuple[str, bytes]], *,
            routing_key: str = "save.{topic}") -> int:
    """Publish persistent messages; return how many were sent."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    count = 0
    try:
        channel = connection.channel()
        channel.exchange_declare(exchange, "topic", durable=True)
        properties = pika.BasicProperties(delivery_mode=2,
                                          content_type="application/json")
        for topic, body in items:
            channel.basic_publish(exchange, routing_key.replace("{topic}", topic),
                                  body, properties)
            count += 1
    finally:
        connection.close()
    return count


def ready_count(amqp_url: str, queue: str) -> int:
    """Messages ready in ``queue`` (unacknowledged ones are not counted)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def drain(amqp_url: str, queue: str) -> list[tuple[pika.BasicProperties, bytes, str]]:
    """Take every message out of ``queue``: (properties, body, routing key)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    taken = []
    try:
        channel = connection.channel()
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return taken
            taken.append((properties, body, method.routing_key))
    finally:
        connection.close()


def declare_saver_queue(amqp_url: str, topology: Topology) -> None:
    """Declare the queue exactly as run-saver will, so messages can wait in it."""
    from brain_storm.saver.consumer import Settings, declare_topology

    settings = Settings(database_url="sqlite://", queue_url=amqp_url,
                        exchange=topology.exchange, queue=topology.queue)
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        declare_topology(connection.channel(), settings)
    finally:
        connection.close()


def declare_queue(amqp_url: str, topology: Topology, **arguments: Any) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.exchange_declare(topology.exchange, "topic", durable=True)
        channel.queue_declare(topology.queue, durable=True, arguments=arguments or None)
    finally:
        connection.close()


class SaverProcess:
    """``python -m brain_storm.saver run-saver`` with URLs in its environment."""

    def __init__(self, database_url: str, amqp_url: str, topology: Topology,
                 log_path: Path, *args: str) -> None:
        self.metrics_port = free_port()
        self.log_path = log_path
        self.env = {
            **os.environ,
            "BRAIN_STORM_DATABASE_URL": database_url,
            "BRAIN_STORM_QUEUE_URL": amqp_url,
        }
        self.args = [
            sys.executable, "-m", "brain_storm.saver", "run-saver",
            "--exchange", topology.exchange, "--queue", topology.queue,
            "--metrics-port", str(self.metrics_port), *args,
        ]
        self.process: subprocess.Popen | None = None

    def start(self) -> SaverProcess:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.args, env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT)
        return self

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}{path}", timeout=5
            ) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, ""

    def wait_ready(self) -> None:
        wait_until(lambda: self.get("/readyz")[0] == 200 or self.exited(),
                   what="the saver to be ready")
        assert not self.exited(), self.log()

    def metric(self, name: str) -> float:
        """Sum of every sample of ``name`` in /metrics."""
        _, text = self.get("/metrics")
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + "{") or line.startswith(name + " "))

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def signal(self, number: int) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def wait(self, timeout_s: float = 120) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> int:
        if self.process is None or self.exited():
            return self.process.returncode if self.process else 0
        self.signal(signal.SIGTERM)
        return self.wait()

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def assert_no_secret_logged(self) -> None:
        assert PASSWORD not in self.log()
        assert PASSWORD.replace("!", "%21") not in self.log()


def body(topic: str, user_id: int, ms: int, value: Any) -> bytes:
    return json.dumps({"userId": str(user_id), "datetime": str(ms),
                       topic: value}).encode()


def result_count(database_url: str) -> int:
    """Rows in the results table, asked of the backend directly."""
    if database_url.startswith("sqlite"):
        import sqlite3

        from brain_storm.databases.sqlite_ import path_of

        with sqlite3.connect(path_of(database_url)) as connection:
            try:
                return connection.execute("SELECT count(*) FROM results").fetchone()[0]
            except sqlite3.OperationalError:
                return 0
    if database_url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(database_url) as connection:
            try:
                return connection.execute("SELECT count(*) FROM results").fetchone()[0]
            except psycopg.errors.UndefinedTable:
                return 0
    import pymongo

    with pymongo.MongoClient(database_url) as client:
        return client.get_default_database().results.count_documents({})
