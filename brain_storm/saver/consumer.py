"""``run-saver``: consume parser results from RabbitMQ and save them in batches.

The loop, in one thread that owns the broker connection:

1. deliveries are buffered as they arrive (at most ``prefetch_count``);
2. a batch is cut when ``batch_size`` messages wait or the oldest has waited
   ``flush_interval_s``, and saved on a worker thread while the loop keeps
   the connection's heartbeats flowing and buffers the next batch;
3. when the batch is committed, the messages the saver refused for good are
   published to the dead-letter exchange with headers saying why, and then the
   whole batch is acknowledged with one multiple-ack.

Nothing is acknowledged before it is committed, so a crash or a lost
connection only causes redelivery, and idempotent writes make redelivery
harmless.  A transient failure (database or broker down) keeps the batch and
retries it with backoff and jitter; a redelivered message is saved alone, so
that a message that crashes the saver costs nobody else its delivery limit.
SIGTERM or SIGINT stop consuming, save what is buffered, acknowledge it and
exit within ``drain_timeout_s``.
"""

from __future__ import annotations

import logging
import queue
import random
import re
import signal
import threading
import time
from collections import Counter as Tally
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from brain_storm.errors import (
    ConfigurationError,
    InvalidMessageError,
    InvalidURLError,
    PermanentError,
    TransientError,
)
from brain_storm.messages import DEFAULT_MAX_MESSAGE_BYTES, check_topic
from brain_storm.saver import Saver
from brain_storm.saver.metrics import Metrics, serve
from brain_storm.urls import QUEUE_SCHEMES, mask_url, url_scheme

log = logging.getLogger(__name__)

HEADER_PREFIX = "x-brain-storm-"
SUBSCRIPTION_CHECK_S = 5.0
MAX_DETAIL_CHARS = 1000


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything ``run-saver`` is told; units are in the names."""

    database_url: str
    queue_url: str
    topics: tuple[str, ...] = ()
    exchange: str = "brain_storm"
    queue: str = "brain_storm.saver"
    routing_key: str = "save.{topic}"
    queue_type: str = "quorum"
    delivery_limit: int = 5
    prefetch_count: int = 1000
    batch_size: int = 500
    max_batch_bytes: int = 8 * 1024 * 1024
    flush_interval_s: float = 0.05
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    drain_timeout_s: float = 20.0
    heartbeat_s: int = 30
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = 9466
    max_backoff_s: float = 30.0

    def __post_init__(self) -> None:
        for topic in self.topics:
            try:
                check_topic(topic)
            except InvalidMessageError as error:
                raise ConfigurationError(str(error)) from None
        if self.routing_key.count("{topic}") != 1:
            raise ConfigurationError(
                f"routing key pattern {self.routing_key!r} must hold {{topic}} once"
            )
        if self.queue_type not in ("quorum", "classic"):
            raise ConfigurationError("queue type must be 'quorum' or 'classic'")
        if not 1 <= self.batch_size <= self.prefetch_count <= 65535:
            raise ConfigurationError(
                "need 1 <= batch size <= prefetch count <= 65535, got "
                f"{self.batch_size} and {self.prefetch_count}"
            )
        if self.flush_interval_s <= 0 or self.drain_timeout_s <= 0:
            raise ConfigurationError("flush interval and drain timeout must be > 0")

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.queue}.dead-letter"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dead-letter"

    def binding_keys(self) -> list[str]:
        """One key per topic; without topics, one key that matches them all."""
        topics = self.topics or ("*",)
        return [self.routing_key.replace("{topic}", topic) for topic in topics]

    def topic_pattern(self) -> re.Pattern[str]:
        prefix, _, suffix = self.routing_key.partition("{topic}")
        return re.compile(re.escape(prefix) + r"([^.]+)" + re.escape(suffix) + r"\Z")


def connection_parameters(url: str, *, heartbeat_s: int) -> pika.URLParameters:
    """pika's parameters for a ``rabbitmq://``, ``amqp://`` or ``amqps://`` URL."""
    scheme = url_scheme(url)
    if scheme not in QUEUE_SCHEMES:
        raise InvalidURLError(
            f"queue URL {mask_url(url)!r} must start with one of "
            + ", ".join(f"{name}://" for name in QUEUE_SCHEMES)
        )
    amqp_url = QUEUE_SCHEMES[scheme] + url[len(scheme):]
    try:
        parameters = pika.URLParameters(amqp_url)
    except (ValueError, TypeError) as error:
        raise InvalidURLError(f"bad queue URL {mask_url(url)!r}: {error}") from None
    if "heartbeat" not in parse_qs(urlsplit(amqp_url).query):
        parameters.heartbeat = heartbeat_s
    parameters.client_properties = {"connection_name": "brain_storm saver"}
    parameters.blocked_connection_timeout = 300
    parameters.connection_attempts = 1
    return parameters


class ConsumerCancelled(pika.exceptions.AMQPChannelError):
    """The broker ended the subscription; reconnecting declares the queue again."""


class TopologyError(ConfigurationError):
    """The broker holds an exchange or queue declared with other arguments."""


def declare_topology(channel: BlockingChannel, settings: Settings) -> None:
    """Declare the exchanges, queues and bindings the saver consumes through."""
    queue_arguments: dict[str, Any] = {
        "x-queue-type": settings.queue_type,
        "x-dead-letter-exchange": settings.dead_letter_exchange,
    }
    if settings.queue_type == "quorum":
        queue_arguments["x-delivery-limit"] = settings.delivery_limit
    try:
        channel.exchange_declare(settings.exchange, "topic", durable=True)
        channel.exchange_declare(settings.dead_letter_exchange, "fanout", durable=True)
        channel.queue_declare(
            settings.dead_letter_queue, durable=True,
            arguments={"x-queue-type": settings.queue_type},
        )
        channel.queue_bind(settings.dead_letter_queue, settings.dead_letter_exchange)
        channel.queue_declare(settings.queue, durable=True, arguments=queue_arguments)
        for key in settings.binding_keys():
            channel.queue_bind(settings.queue, settings.exchange, key)
    except pika.exceptions.ChannelClosedByBroker as error:
        if error.reply_code == 406:
            raise TopologyError(
                f"the broker already has {error.reply_text.split(' - ', 1)[-1]}; "
                f"delete it or choose another --queue/--exchange than "
                f"{settings.queue!r}/{settings.exchange!r}"
            ) from error
        raise


@dataclass(slots=True)
class Delivery:
    tag: int
    routing_key: str
    body: bytes
    properties: pika.BasicProperties
    redelivered: bool
    topic: str | None


@dataclass(slots=True)
class Flight:
    """A batch on its way to the database."""

    deliveries: list[Delivery]
    future: Future
    started: float = field(default_factory=time.monotonic)


class _Worker:
    """One daemon thread that saves batches in order.

    A daemon, so that a database hung for good cannot keep the process alive
    past its drain bound: what it held is redelivered by the broker.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="flush", daemon=True)
        self._thread.start()

    def submit(self, function: Any, *args: Any) -> Future:
        future: Future = Future()
        self._jobs.put((future, function, args))
        return future

    def _serve(self) -> None:
        while True:
            future, function, args = self._jobs.get()
            if future is None:
                return
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(function(*args))
                except BaseException as error:  # handed to the loop, which decides
                    future.set_exception(error)

    def stop(self, *, timeout_s: float) -> bool:
        """Finish what was submitted, for at most ``timeout_s``; True if done."""
        self._jobs.put((None, None, None))
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


class Backoff:
    """Exponential backoff with jitter: half to all of 0.5 s, 1 s, 2 s… up to a cap."""

    def __init__(self, *, first_s: float = 0.5, cap_s: float = 30.0) -> None:
        self.first_s = first_s
        self.cap_s = cap_s
        self.attempt = 0

    def next_delay_s(self) -> float:
        delay = min(self.cap_s, self.first_s * 2**self.attempt)
        self.attempt += 1
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempt = 0


class SaverService:
    """One ``run-saver`` process: reconnects forever, drains on a signal."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.parameters = connection_parameters(
            settings.queue_url, heartbeat_s=settings.heartbeat_s
        )
        self.saver = Saver(
            settings.database_url, max_message_bytes=settings.max_message_bytes
        )
        self.metrics = Metrics()
        self._topic_pattern = settings.topic_pattern()
        self._topics = frozenset(settings.topics)
        self._topic_cache: dict[str, str | None] = {}
        self._stop = threading.Event()
        self._worker = _Worker()
        self._leftover: Future | None = None
        self._broker_backoff = Backoff(cap_s=settings.max_backoff_s)
        self._database_backoff = Backoff(cap_s=settings.max_backoff_s)

    # -- lifecycle ---------------------------------------------------------

    def request_stop(self) -> None:
        """Stop consuming, save what is buffered, and return from run()."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def on_signal(number: int, _frame: object) -> None:
            if self._stop.is_set():
                log.warning("second %s: stopping without draining",
                            signal.Signals(number).name)
                raise SystemExit(1)
            log.info("%s received: draining", signal.Signals(number).name)
            self._stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def run(self) -> int:
        """Consume until asked to stop; the exit status of ``run-saver``."""
        settings = self.settings
        log.info(
            "starting: database %s, broker %s, queue %r, topics %s; "
            "stops within %.0fs of SIGTERM",
            mask_url(settings.database_url), mask_url(settings.queue_url),
            settings.queue, ", ".join(settings.topics) or "all",
            settings.drain_timeout_s,
        )
        if settings.metrics_port is not None:
            try:
                server = serve(self.metrics, settings.metrics_host,
                               settings.metrics_port)
            except OSError as error:
                raise ConfigurationError(
                    f"cannot serve metrics on {settings.metrics_host}:"
                    f"{settings.metrics_port}: {error.strerror}") from None
            log.info("serving /metrics, /healthz, /readyz on %s:%d",
                     settings.metrics_host, server.server_address[1])
        try:
            return self._run()
        finally:
            if self._worker.stop(timeout_s=1.0):
                self.saver.close()
            else:
                log.warning("a batch is still being written; leaving it to "
                            "the broker to redeliver")
            log.info("stopped")

    def _run(self) -> int:
        if not self._wait_for_database():
            return 0
        while not self._stop.is_set():
            try:
                self._session()
                return 0
            except ConfigurationError as error:
                log.error("cannot consume: %s", error)
                return 2
            except (pika.exceptions.AMQPError, OSError) as error:
                self.metrics.set_connected(broker=False)
                self.metrics.reconnects.labels("broker").inc()
                delay = self._broker_backoff.next_delay_s()
                log.warning("broker unavailable (%s); reconnecting in %.1fs",
                            describe_amqp_error(error), delay)
                self._stop.wait(delay)
        return 0

    def _wait_for_database(self) -> bool:
        """Block until the database answers; False if asked to stop first."""
        while not self._stop.is_set():
            try:
                self.saver.ping()
            except TransientError as error:
                delay = self._database_backoff.next_delay_s()
                log.warning("database unavailable (%s); retrying in %.1fs",
                            error, delay)
                self._stop.wait(delay)
                continue
            self._database_backoff.reset()
            self.metrics.set_connected(database=True)
            log.info("database %s reachable", mask_url(self.settings.database_url))
            return True
        return False

    # -- one broker connection ---------------------------------------------

    def _session(self) -> None:
        """Consume on one connection until drained; raise when it is lost."""
        # A batch still being written from a lost connection must land before
        # its redelivered copies, or an old value could overwrite a newer one.
        if self._leftover is not None:
            _wait_quietly(self._leftover)
            self._leftover = None

        connection = pika.BlockingConnection(self.parameters)
        try:
            channel = connection.channel()
            declare_topology(channel, self.settings)
            channel.confirm_delivery()
            consumer = _Consumer(self, connection, channel)
            self._broker_backoff.reset()
            self.metrics.set_connected(broker=True)
            log.info("consuming from %r with prefetch %d, batches of %d or %.2fs",
                     self.settings.queue, self.settings.prefetch_count,
                     self.settings.batch_size, self.settings.flush_interval_s)
            try:
                consumer.run()
            finally:
                self._leftover = consumer.abandon()
        finally:
            self.metrics.set_connected(broker=False)
            _close_quietly(connection)

    def topic_of(self, routing_key: str) -> str | None:
        """The topic a routing key names, or None if this saver takes none."""
        try:
            return self._topic_cache[routing_key]
        except KeyError:
            pass
        match = self._topic_pattern.match(routing_key)
        topic = match.group(1) if match else None
        if self._topics and topic not in self._topics:
            topic = None
        if len(self._topic_cache) < 1024:
            self._topic_cache[routing_key] = topic
        return topic

    def save(self, deliveries: list[Delivery]) -> list[PermanentError | None]:
        """Runs on the worker thread: save a batch, one outcome per delivery."""
        outcomes: list[PermanentError | None] = [None] * len(deliveries)
        items, positions = [], []
        for position, delivery in enumerate(deliveries):
            if delivery.topic is None:
                outcomes[position] = InvalidMessageError(
                    f"routing key {delivery.routing_key!r} names no topic this "
                    f"saver takes (pattern {self.settings.routing_key!r})",
                    reason="unknown_topic",
                )
            else:
                items.append((delivery.topic, delivery.body))
                positions.append(position)
        for position, outcome in zip(positions, self.saver.save_many(items), strict=True):
            outcomes[position] = outcome
        return outcomes


class _Consumer:
    """The consume loop of one channel; its delivery tags die with it."""

    def __init__(self, service: SaverService, connection: pika.BlockingConnection,
                 channel: BlockingChannel) -> None:
        self.service = service
        self.settings = service.settings
        self.metrics = service.metrics
        self.connection = connection
        self.channel = channel
        self.buffer: list[Delivery] = []
        self.buffered_bytes = 0
        self.oldest_at = 0.0
        self.flight: Flight | None = None
        self.retry: list[Delivery] | None = None
        self.retry_at = 0.0
        # Start cautious: until a first-time delivery shows up, whatever comes
        # may be what killed the last consumer (see _adjust_prefetch).
        self.cautious = True
        self.prefetch_count = 1
        channel.basic_qos(prefetch_count=1)
        self.cancelled_by_broker = False
        self.checked_at = time.monotonic()
        channel.add_on_cancel_callback(self._on_broker_cancel)
        self.consumer_tag = channel.basic_consume(self.settings.queue, self._on_message)

    def _on_broker_cancel(self, _frame: Any) -> None:
        # The queue was deleted, or this node lost it: no more deliveries
        # will come on this subscription, so start over on a new connection.
        self.cancelled_by_broker = True

    def _on_message(self, _channel: BlockingChannel, method: Any,
                    properties: pika.BasicProperties, body: bytes) -> None:
        if not self.buffer:
            self.oldest_at = time.monotonic()
        if self.cautious and not method.redelivered:
            self.cautious = False
        self.buffered_bytes += len(body)
        self.buffer.append(Delivery(
            method.delivery_tag, method.routing_key, body, properties,
            method.redelivered, self.service.topic_of(method.routing_key),
        ))

    def run(self) -> None:
        draining_until: float | None = None
        while True:
            now = time.monotonic()
            self.metrics.last_turn = now
            if draining_until is None and self.service._stop.is_set():
                draining_until = now + self.settings.drain_timeout_s
                self.channel.basic_cancel(self.consumer_tag)
                log.info("draining: %d buffered, %d in flight", len(self.buffer),
                         len(self.flight.deliveries) if self.flight else 0)

            if self.flight is not None and self.flight.future.done():
                self._land(self.flight)
                self.flight = None
            if self.flight is None:
                self._take_off(now, draining=draining_until is not None)
            if draining_until is None:
                self._adjust_prefetch()

            if draining_until is None:
                self._check_subscription(now)

            idle = self.flight is None and self.retry is None and not self.buffer
            if draining_until is not None and idle:
                return
            if draining_until is not None and now >= draining_until:
                log.warning("drain timed out: %d messages left unacknowledged "
                            "for redelivery", self._unacked())
                return
            self.connection.process_data_events(time_limit=self._wait_s(now))

    def _check_subscription(self, now: float) -> None:
        """Start over if the queue went away under this consumer.

        The broker says so with a cancel, but a queue deleted and declared
        again at once can leave the subscription dead without one; so an
        idle consumer also asks the queue, now and then, whether anybody
        consumes it.  A queue that is gone closes the channel, which ends
        this connection the same way.
        """
        if not self.cancelled_by_broker:
            idle = self.flight is None and not self.buffer and self.retry is None
            if not idle or now - self.checked_at < SUBSCRIPTION_CHECK_S:
                return
            self.checked_at = now
            declared = self.channel.queue_declare(self.settings.queue, passive=True)
            if declared.method.consumer_count > 0:
                return
        raise ConsumerCancelled(
            f"the broker cancelled the subscription to {self.settings.queue!r} "
            "(queue deleted?)")

    def _adjust_prefetch(self) -> None:
        """Widen the prefetch once the first first-time delivery arrives.

        A quorum queue counts a delivery against every message a dying
        consumer held, processed or not.  Taking one message at a time while
        redelivered messages come means a message that crashes the saver uses
        up its own delivery limit and no other message's.  A quorum queue
        fixes a consumer's prefetch when it subscribes, so widening means
        subscribing again; at that moment the one message held is in the
        buffer, so the cancel returns nothing to the queue.
        """
        if self.cautious or self.prefetch_count != 1:
            return
        self.channel.basic_cancel(self.consumer_tag)
        self.channel.basic_qos(prefetch_count=self.settings.prefetch_count)
        self.prefetch_count = self.settings.prefetch_count
        self.consumer_tag = self.channel.basic_consume(
            self.settings.queue, self._on_message)

    def _wait_s(self, now: float) -> float:
        if self.flight is not None:
            return 1.0  # the worker wakes the loop when the batch lands
        if self.retry is not None:
            return max(0.0, min(1.0, self.retry_at - now))
        if self.buffer:
            return max(0.0, self.oldest_at + self.settings.flush_interval_s - now)
        return 1.0

    def _take_off(self, now: float, *, draining: bool) -> None:
        """Start saving the next batch, if one is due."""
        if self.retry is not None:
            if now >= self.retry_at:
                self._launch(self.retry)
                self.retry = None
            return
        if not self.buffer:
            return
        # With a prefetch of one, no second message can come: waiting is moot.
        full = min(self.settings.batch_size, self.prefetch_count)
        due = (len(self.buffer) >= full or draining
               or self.buffered_bytes >= self.settings.max_batch_bytes
               or now - self.oldest_at >= self.settings.flush_interval_s)
        if not due:
            return
        if self.buffer[0].redelivered:
            size = 1
        else:
            # Parsed JSON takes ten times its bytes: a byte budget keeps a
            # batch of large messages from multiplying the saver's memory.
            size, budget = 0, self.settings.max_batch_bytes
            limit = min(self.settings.batch_size, len(self.buffer))
            while size < limit and not self.buffer[size].redelivered:
                budget -= len(self.buffer[size].body)
                if budget < 0 and size:
                    break
                size += 1
        batch = self.buffer[:size]
        del self.buffer[:size]
        self.buffered_bytes -= sum(len(delivery.body) for delivery in batch)
        self.oldest_at = now
        self._launch(batch)

    def _launch(self, deliveries: list[Delivery]) -> None:
        future = self.service._worker.submit(self.service.save, deliveries)
        wake = self.connection.add_callback_threadsafe
        future.add_done_callback(lambda _future: _call_quietly(wake, _noop))
        self.flight = Flight(deliveries, future)
        self.metrics.flight_started = self.flight.started

    def _land(self, flight: Flight) -> None:
        """Acknowledge a saved batch, or keep it for a retry."""
        self.metrics.flight_started = None
        try:
            outcomes = flight.future.result()
        except TransientError as error:
            self.metrics.set_connected(database=False)
            self.metrics.retries.inc()
            delay = self.service._database_backoff.next_delay_s()
            log.warning("database unavailable (%s); retrying a batch of %d in %.1fs",
                        error, len(flight.deliveries), delay)
            self.retry = flight.deliveries
            self.retry_at = time.monotonic() + delay
            return
        if self.service._database_backoff.attempt:
            log.info("database reachable again")
        self.service._database_backoff.reset()
        self.metrics.set_connected(database=True)
        self.metrics.flush_seconds.observe(time.monotonic() - flight.started)
        self.metrics.batch_size.observe(len(flight.deliveries))

        consumed: Tally[str] = Tally()
        saved: Tally[str] = Tally()
        for delivery, outcome in zip(flight.deliveries, outcomes, strict=True):
            topic = self.metrics.topic_label(delivery.topic or "_unknown")
            consumed[topic] += 1
            if outcome is None:
                saved[topic] += 1
            else:
                self._dead_letter(delivery, outcome, topic)
        self.channel.basic_ack(flight.deliveries[-1].tag, multiple=True)
        for topic, count in consumed.items():
            self.metrics.consumed.labels(topic).inc(count)
        for topic, count in saved.items():
            self.metrics.saved.labels(topic).inc(count)

    def _dead_letter(self, delivery: Delivery, error: PermanentError,
                     topic: str) -> None:
        """Publish a refused message to the dead-letter exchange, with why."""
        properties = delivery.properties
        headers = dict(properties.headers or {})
        headers.update({
            f"{HEADER_PREFIX}reason": error.reason,
            f"{HEADER_PREFIX}error": type(error).__name__,
            f"{HEADER_PREFIX}detail": str(error)[:MAX_DETAIL_CHARS],
            f"{HEADER_PREFIX}routing-key": delivery.routing_key,
            f"{HEADER_PREFIX}queue": self.settings.queue,
            f"{HEADER_PREFIX}failed-at": datetime.now(UTC).isoformat(
                timespec="milliseconds"),
        })
        self.channel.basic_publish(
            self.settings.dead_letter_exchange, delivery.routing_key, delivery.body,
            pika.BasicProperties(
                headers=headers, delivery_mode=2,
                content_type=properties.content_type,
                content_encoding=properties.content_encoding,
                message_id=properties.message_id,
                correlation_id=properties.correlation_id,
                timestamp=properties.timestamp,
                type=properties.type, app_id=properties.app_id,
            ),
            mandatory=True,
        )
        self.metrics.dead_lettered.labels(topic, error.reason).inc()
        log.warning("dead-lettered a %s message (routing key %r): %s",
                    topic, delivery.routing_key, error)

    def _unacked(self) -> int:
        flying = len(self.flight.deliveries) if self.flight else 0
        return len(self.buffer) + flying + len(self.retry or ())

    def abandon(self) -> Future | None:
        """Forget every delivery of this channel; return a batch still saving."""
        self.buffer.clear()
        self.buffered_bytes = 0
        self.retry = None
        return self.flight.future if self.flight is not None else None


def describe_amqp_error(error: BaseException) -> str:
    """One line for a pika or socket error, whose str() is often empty."""
    while isinstance(error, pika.exceptions.AMQPConnectionError) and error.args:
        inner = error.args[0]
        if not isinstance(inner, BaseException):
            break
        error = inner
    text = str(error).strip()
    name = type(error).__name__
    return f"{name}: {text}" if text else name


def _noop() -> None:
    pass


def _call_quietly(function: Any, *args: Any) -> None:
    try:
        function(*args)
    except Exception:  # the connection may be gone by the time a batch lands
        pass


def _wait_quietly(future: Future) -> None:
    try:
        future.result()
    except Exception:
        pass


def _close_quietly(connection: pika.BlockingConnection) -> None:
    try:
        if connection.is_open:
            connection.close()
    except Exception:
        pass
