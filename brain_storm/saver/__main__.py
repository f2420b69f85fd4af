"""The saver's command line.

    python -m brain_storm.saver save [-d URL] TOPIC PATH
    python -m brain_storm.saver save-all [-d URL] FOLDER
    python -m brain_storm.saver run-saver [DB_URL] [MQ_URL] [options]
    python -m brain_storm.saver publish [-q MQ_URL] FOLDER

URLs may come from the environment instead of the arguments
(BRAIN_STORM_DATABASE_URL, BRAIN_STORM_QUEUE_URL), so that a password need not
appear in a process's arguments; every option of run-saver has an environment
variable too (see --help).  Exit status: 0 done, 1 a message was refused or a
server could not be reached, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from brain_storm.errors import (
    BrainStormError,
    ConfigurationError,
)
from brain_storm.saver import DATABASE_URL_ENV, Saver, default_database_url
from brain_storm.saver.files import message_files
from brain_storm.urls import mask_url

QUEUE_URL_ENV = "BRAIN_STORM_QUEUE_URL"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    _configure_logging(arguments.log_level, arguments.log_format)
    try:
        return arguments.command(arguments)
    except ConfigurationError as error:
        _fail(str(error))
        return EXIT_USAGE
    except BrainStormError as error:
        _fail(str(error))
        return EXIT_FAILED


def _save(arguments: argparse.Namespace) -> int:
    if arguments.path == "-":
        data: Any = sys.stdin.buffer.read()
    else:
        try:
            data = Path(arguments.path).read_bytes()
        except OSError as error:
            _fail(f"cannot read {arguments.path}: {error.strerror}")
            return EXIT_FAILED
    with Saver(arguments.database) as saver:
        saver.save(arguments.topic, data)
    return EXIT_OK


def _save_all(arguments: argparse.Namespace) -> int:
    if not Path(arguments.folder).is_dir():
        _fail(f"no such folder: {arguments.folder}")
        return EXIT_FAILED
    files = message_files(Path(arguments.folder))
    if not files:
        _fail(f"no <topic>/*.json files under {arguments.folder}")
        return EXIT_FAILED
    with Saver(arguments.database) as saver:
        items = [(topic, path.read_bytes()) for topic, path in files]
        outcomes = saver.save_many(items)
    failed = 0
    for (_topic, path), outcome in zip(files, outcomes, strict=True):
        if outcome is not None:
            failed += 1
            _fail(f"{path}: {outcome}")
    saved = len(files) - failed
    print(f"saved {saved} of {len(files)} messages to "
          f"{mask_url(saver.database_url)}")
    return EXIT_OK if not failed else EXIT_FAILED


def _run_saver(arguments: argparse.Namespace) -> int:
    from brain_storm.saver.consumer import SaverService, Settings

    database_url = arguments.database_url or os.environ.get(DATABASE_URL_ENV)
    queue_url = arguments.queue_url or os.environ.get(QUEUE_URL_ENV)
    if not database_url or not queue_url:
        _fail(f"run-saver needs DB_URL and MQ_URL, as arguments or as "
              f"${DATABASE_URL_ENV} and ${QUEUE_URL_ENV}")
        return EXIT_USAGE
    settings = Settings(
        database_url=database_url,
        queue_url=queue_url,
        topics=tuple(arguments.topic or _split(os.environ.get("BRAIN_STORM_TOPICS"))),
        exchange=arguments.exchange,
        queue=arguments.queue,
        routing_key=arguments.routing_key,
        queue_type=arguments.queue_type,
        delivery_limit=arguments.delivery_limit,
        prefetch_count=arguments.prefetch_count,
        batch_size=arguments.batch_size,
        max_batch_bytes=arguments.max_batch_bytes,
        flush_interval_s=arguments.flush_interval_s,
        max_message_bytes=arguments.max_message_bytes,
        drain_timeout_s=arguments.drain_timeout_s,
        metrics_host=arguments.metrics_host,
        metrics_port=None if arguments.metrics_port < 0 else arguments.metrics_port,
    )
    service = SaverService(settings)
    service.install_signal_handlers()
    return service.run()


def _publish(arguments: argparse.Namespace) -> int:
    from brain_storm.saver.publish import publish_folder

    queue_url = arguments.queue_url or os.environ.get(QUEUE_URL_ENV)
    if not queue_url:
        _fail(f"publish needs -q MQ_URL or ${QUEUE_URL_ENV}")
        return EXIT_USAGE
    count = publish_folder(
        queue_url, Path(arguments.folder), exchange=arguments.exchange,
        routing_key=arguments.routing_key, repeat=arguments.repeat,
    )
    print(f"published {count} messages to exchange {arguments.exchange!r}")
    return EXIT_OK


def _split(text: str | None) -> list[str]:
    return [part for part in (text or "").replace(",", " ").split() if part]


def _option(parser: argparse.ArgumentParser, flag: str, env: str, default: Any,
            help: str, kind: type = str, **extra: Any) -> None:
    """An option whose default comes from environment variable ``env``."""
    value = os.environ.get(env)
    if value not in (None, ""):
        try:
            default = kind(value)
        except ValueError:
            parser.exit(EXIT_USAGE, f"error: ${env}={value!r} is not a valid "
                                    f"{kind.__name__}\n")
    parser.add_argument(flag, type=kind, default=default,
                        help=f"{help} (env {env}; default: %(default)s)", **extra)


def _add_logging_options(parser: argparse.ArgumentParser) -> None:
    _option(parser, "--log-level", "BRAIN_STORM_LOG_LEVEL", "INFO", "log level",
            kind=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    _option(parser, "--log-format", "BRAIN_STORM_LOG_FORMAT", "text",
            "log as text or as JSON lines", choices=["text", "json"])


def _common_options() -> argparse.ArgumentParser:
    """The logging options again, after the command, where they win."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", type=str.upper, default=argparse.SUPPRESS,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log level (env BRAIN_STORM_LOG_LEVEL; default: INFO)")
    common.add_argument("--log-format", default=argparse.SUPPRESS,
                        choices=["text", "json"],
                        help="log as text or as JSON lines (env "
                             "BRAIN_STORM_LOG_FORMAT; default: text)")
    return common


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m brain_storm.saver",
        description="Save brain_storm parser results to a database.",
    )
    _add_logging_options(parser)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    common = _common_options()

    database_help = (f"database URL (default: ${DATABASE_URL_ENV}, else "
                     f"{default_database_url()})")
    save = commands.add_parser("save", parents=[common],
                               help="save one message file once")
    save.add_argument("-d", "--database", help=database_help)
    save.add_argument("topic", metavar="TOPIC")
    save.add_argument("path", metavar="PATH", help="a JSON file, or - for stdin")
    save.set_defaults(command=_save)

    save_all = commands.add_parser(
        "save-all", parents=[common],
        help="save every FOLDER/<topic>/*.json file, e.g. examples/messages")
    save_all.add_argument("-d", "--database", help=database_help)
    save_all.add_argument("folder", metavar="FOLDER")
    save_all.set_defaults(command=_save_all)

    run = commands.add_parser("run-saver", parents=[common],
                              help="consume RabbitMQ and save, forever")
    run.add_argument("database_url", metavar="DB_URL", nargs="?",
                     help=f"database URL (or ${DATABASE_URL_ENV})")
    run.add_argument("queue_url", metavar="MQ_URL", nargs="?",
                     help=f"rabbitmq://, amqp:// or amqps:// URL (or ${QUEUE_URL_ENV})")
    run.add_argument("-t", "--topic", action="append",
                     help="a topic to consume; repeat for more (env "
                          "BRAIN_STORM_TOPICS, comma-separated; default: every topic)")
    _queue_options(run)
    _option(run, "--queue", "BRAIN_STORM_QUEUE", "brain_storm.saver",
            "the saver group's queue")
    _option(run, "--queue-type", "BRAIN_STORM_QUEUE_TYPE", "quorum",
            "the queue's type", choices=["quorum", "classic"])
    _option(run, "--delivery-limit", "BRAIN_STORM_DELIVERY_LIMIT", 5,
            "deliveries before the broker sets a message aside (quorum queues)",
            kind=int)
    _option(run, "--prefetch-count", "BRAIN_STORM_PREFETCH_COUNT", 1000,
            "unacknowledged messages held at most", kind=int)
    _option(run, "--batch-size", "BRAIN_STORM_BATCH_SIZE", 500,
            "messages per database commit", kind=int)
    _option(run, "--max-batch-bytes", "BRAIN_STORM_MAX_BATCH_BYTES", 8 * 1024 * 1024,
            "message bytes per database commit, at most", kind=int)
    _option(run, "--flush-interval-s", "BRAIN_STORM_FLUSH_INTERVAL_S", 0.05,
            "longest wait before a partial batch is saved", kind=float)
    _option(run, "--max-message-bytes", "BRAIN_STORM_MAX_MESSAGE_BYTES",
            1024 * 1024, "larger bodies are dead-lettered", kind=int)
    _option(run, "--drain-timeout-s", "BRAIN_STORM_DRAIN_TIMEOUT_S", 20.0,
            "bound on a clean stop after SIGTERM", kind=float)
    _option(run, "--metrics-host", "BRAIN_STORM_METRICS_HOST", "127.0.0.1",
            "address of /metrics, /healthz and /readyz")
    _option(run, "--metrics-port", "BRAIN_STORM_METRICS_PORT", 9466,
            "port of /metrics, /healthz and /readyz; -1 turns them off", kind=int)
    run.set_defaults(command=_run_saver)

    publish = commands.add_parser(
        "publish", parents=[common],
        help="publish every FOLDER/<topic>/*.json file to RabbitMQ")
    publish.add_argument("-q", "--queue-url", help=f"broker URL (or ${QUEUE_URL_ENV})")
    publish.add_argument("folder", metavar="FOLDER")
    publish.add_argument("--repeat", type=int, default=1,
                         help="publish the folder this many times")
    _queue_options(publish)
    publish.set_defaults(command=_publish)
    return parser


def _queue_options(parser: argparse.ArgumentParser) -> None:
    _option(parser, "--exchange", "BRAIN_STORM_EXCHANGE", "brain_storm",
            "topic exchange parsers publish to")
    _option(parser, "--routing-key", "BRAIN_STORM_ROUTING_KEY", "save.{topic}",
            "routing key pattern")


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _configure_logging(level: str, log_format: str) -> None:
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(_JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # pika logs every failed connection with a traceback; the saver says what
    # happened in one line of its own, so pika speaks only when debugging.
    pika_level = logging.DEBUG if level == "DEBUG" else logging.CRITICAL
    logging.getLogger("pika").setLevel(pika_level)


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
