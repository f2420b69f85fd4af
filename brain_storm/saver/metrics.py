"""Prometheus metrics and the health endpoints of ``run-saver``.

One small HTTP server answers three paths:

    /metrics   Prometheus text format
    /healthz   200 while the process is alive and its loop is turning
    /readyz    200 only while both the broker and the database are connected,
           and no batch has been writing for more than STUCK_FLUSH_S

Topic labels come from routing keys, which anybody who can publish chooses,
so at most MAX_TOPIC_LABELS distinct topics are labelled; the rest count
under ``_other``.  No label ever holds a URL.
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MAX_TOPIC_LABELS = 64
OTHER_TOPIC = "_other"
STALL_LIMIT_S = 120.0  # /healthz fails when the loop has not turned for this long
STUCK_FLUSH_S = 30.0  # /readyz fails while one batch has been writing this long

log = logging.getLogger(__name__)


class Metrics:
    """Every metric of one saver process, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        namespace = "brain_storm_saver"
        self.consumed = Counter(
            "messages_consumed", "Messages received from the queue.",
            ["topic"], namespace=namespace, registry=self.registry,
        )
        self.saved = Counter(
            "messages_saved", "Messages committed to the database.",
            ["topic"], namespace=namespace, registry=self.registry,
        )
        self.dead_lettered = Counter(
            "messages_dead_lettered", "Messages set aside, by reason.",
            ["topic", "reason"], namespace=namespace, registry=self.registry,
        )
        self.batch_size = Histogram(
            "batch_size_messages", "Messages per flushed batch.",
            namespace=namespace, registry=self.registry,
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
        )
        self.flush_seconds = Histogram(
            "flush_seconds", "Time to commit one batch.",
            namespace=namespace, registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.reconnects = Counter(
            "reconnects", "Connections lost and made again.",
            ["target"], namespace=namespace, registry=self.registry,
        )
        self.retries = Counter(
            "batch_retries", "Batches retried after a transient error.",
            namespace=namespace, registry=self.registry,
        )
        self.ready = Gauge(
            "ready", "1 while both the broker and the database are connected.",
            namespace=namespace, registry=self.registry,
        )
        self._topics: set[str] = set()
        self.broker_connected = False
        self.database_connected = False
        self.last_turn = time.monotonic()
        self.flight_started: float | None = None

    def topic_label(self, topic: str) -> str:
        if topic in self._topics:
            return topic
        if len(self._topics) < MAX_TOPIC_LABELS:
            self._topics.add(topic)
            return topic
        return OTHER_TOPIC

    def set_connected(self, *, broker: bool | None = None,
                      database: bool | None = None) -> None:
        if broker is not None:
            self.broker_connected = broker
        if database is not None:
            self.database_connected = database
        self.ready.set(int(self.is_ready()))

    def is_ready(self) -> bool:
        started = self.flight_started
        stuck = started is not None and time.monotonic() - started > STUCK_FLUSH_S
        return self.broker_connected and self.database_connected and not stuck

    def is_alive(self) -> bool:
        return time.monotonic() - self.last_turn < STALL_LIMIT_S


class _Handler(BaseHTTPRequestHandler):
    metrics: Metrics

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        if self.path == "/metrics":
            self._answer(200, generate_latest(self.metrics.registry),
                         CONTENT_TYPE_LATEST)
        elif self.path == "/healthz":
            alive = self.metrics.is_alive()
            self._answer(200 if alive else 503, b"ok\n" if alive else b"stalled\n")
        elif self.path == "/readyz":
            ready = self.metrics.is_ready()
            self._answer(200 if ready else 503,
                         b"ready\n" if ready else b"not ready\n")
        else:
            self._answer(404, b"not found\n")

    def _answer(self, status: int, body: bytes,
                content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http: " + format, *args)


def serve(metrics: Metrics, host: str, port: int) -> ThreadingHTTPServer:
    """Serve ``metrics`` on ``host:port`` from a daemon thread."""
    handler = type("Handler", (_Handler,), {"metrics": metrics})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="metrics",
                              daemon=True)
    thread.start()
    return server
