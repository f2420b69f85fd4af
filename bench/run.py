"""Throughput, memory and latency of run-saver, side by side with its baselines.

    python bench/run.py [--messages 200000] [--skip-latency]

Starts its own RabbitMQ and PostgreSQL (tests/servers.py), then, for each
contender in turn, pre-publishes the same pose messages to a durable quorum
queue and lets one consumer process drain it:

    raw            pika consumer, ack each message and discard (bench/baselines.py)
    raw multi-ack  the same, acknowledging 500 at a time: the ceiling of any
                   pika consumer of this queue, with nothing else to do
    naive          auto-ack, one upsert and one commit per message, PostgreSQL
    run-saver pg   python -m brain_storm.saver run-saver, PostgreSQL
    run-saver sqlite   the same on SQLite

It prints messages per second, peak RSS, CPU per message of the consumer,
the broker and the database, and the ratios, and writes them to
bench/results/latest.json.  Then it publishes at a half and at a quarter of
the PostgreSQL rate and reports publish-to-commit latency percentiles, from
PostgreSQL's own commit timestamps.  All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pika
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from servers import PostgresServer, RabbitMQServer, free_port  # noqa: E402

from brain_storm.saver.consumer import Settings, declare_topology  # noqa: E402

USERS = 16


def pose_body(index: int, *, sent_at_us: int | None = None) -> bytes:
    pose = {
        "translation": {"x": 0.48738 + index % 7, "y": 0.00709, "z": -1.13061},
        "rotation": {"x": -0.10888, "y": -0.26755, "z": -0.02127, "w": 0.95713},
    }
    if sent_at_us is not None:
        pose["sentAtUs"] = sent_at_us
    return json.dumps({
        "userId": str(1000 + index % USERS),
        "datetime": str(1_575_446_887_339 + index),
        "pose": pose,
    }).encode()


def prepare_queue(amqp_url: str, queue: str, count: int) -> None:
    """Declare the queue as run-saver would, and fill it with ``count`` messages."""
    settings = Settings(database_url="sqlite://", queue_url=amqp_url, queue=queue,
                        exchange=f"{queue}_ex")
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    declare_topology(channel, settings)
    channel.queue_purge(queue)
    properties = pika.BasicProperties(delivery_mode=2)
    for index in range(count):
        channel.basic_publish(settings.exchange, "save.pose", pose_body(index),
                              properties)
    while channel.queue_declare(queue, passive=True).method.message_count < count:
        time.sleep(0.2)
    connection.close()


def cpu_seconds(names: tuple[str, ...] = ("beam.smp", "postgres")) -> dict[str, float]:
    """CPU seconds used so far by every process of each name (broker, database)."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = dict.fromkeys(names, 0.0)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        if name in used:
            fields = text[text.rindex(")") + 2:].split()
            used[name] += (int(fields[11]) + int(fields[12])) / ticks
    return used


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def run_baseline(kind: str, amqp_url: str, queue: str, count: int,
                 database_url: str = "") -> dict:
    servers_before = cpu_seconds()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "baselines.py"), kind, amqp_url,
         queue, str(count), database_url],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    rss = peak_rss_mib(process.pid)
    own = process_cpu_seconds(process.pid)
    servers_after = cpu_seconds()
    process.communicate("\n")
    figures = json.loads(line)
    return {"rate": figures["messages"] / figures["seconds"], "rss_mib": rss,
            "seconds": figures["seconds"],
            **cpu_per_message(own, servers_before, servers_after, count)}


def cpu_per_message(own: float, before: dict, after: dict, count: int) -> dict:
    """Microseconds of CPU per message: the consumer's, the broker's, the database's."""
    return {
        "cpu_us_consumer": own / count * 1e6,
        "cpu_us_broker": (after["beam.smp"] - before["beam.smp"]) / count * 1e6,
        "cpu_us_database": (after["postgres"] - before["postgres"]) / count * 1e6,
    }


def count_results(database_url: str) -> int:
    if database_url.startswith("sqlite"):
        import sqlite3

        path = database_url.split("///", 1)[1]
        try:
            with sqlite3.connect(path) as connection:
                return connection.execute("SELECT count(*) FROM results").fetchone()[0]
        except sqlite3.OperationalError:
            return 0
    with psycopg.connect(database_url) as connection:
        try:
            return connection.execute("SELECT count(*) FROM results").fetchone()[0]
        except psycopg.errors.UndefinedTable:
            return 0


def start_saver(database_url: str, amqp_url: str, queue: str, log: Path,
                *extra: str) -> subprocess.Popen:
    env = {**os.environ, "BRAIN_STORM_DATABASE_URL": database_url,
           "BRAIN_STORM_QUEUE_URL": amqp_url}
    return subprocess.Popen(
        [sys.executable, "-m", "brain_storm.saver", "run-saver", "--queue", queue,
         "--exchange", f"{queue}_ex", "--metrics-port", str(free_port()), *extra],
        env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=ROOT)


def log_time(log: Path, event: str) -> float:
    """Wall-clock time of the first log line holding ``event``."""
    while True:
        for line in log.read_text().splitlines():
            if event in line:
                stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
                return stamp.timestamp()
        time.sleep(0.01)


def run_saver(database_url: str, amqp_url: str, queue: str, count: int,
              log: Path, *extra: str) -> dict:
    servers_before = cpu_seconds()
    process = start_saver(database_url, amqp_url, queue, log, *extra)
    while count_results(database_url) < count:
        time.sleep(0.05)
    done = time.time()
    started = log_time(log, "consuming from")
    rss = peak_rss_mib(process.pid)
    own = process_cpu_seconds(process.pid)
    servers_after = cpu_seconds()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    return {"rate": count / (done - started), "rss_mib": rss,
            "seconds": done - started,
            **cpu_per_message(own, servers_before, servers_after, count)}


def latency(database_url: str, amqp_url: str, queue: str, rate: float,
            seconds: float, log: Path) -> dict:
    """Publish at ``rate`` for ``seconds``; percentiles of publish→commit."""
    settings = Settings(database_url="sqlite://", queue_url=amqp_url, queue=queue,
                        exchange=f"{queue}_ex")
    process = start_saver(database_url, amqp_url, queue, log)
    log_time(log, "consuming from")
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    total = int(rate * seconds)
    begin = time.perf_counter()
    offset = 10_000_000  # datetimes apart from the throughput run's
    for index in range(total):
        due = begin + index / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        body = pose_body(offset + index, sent_at_us=time.time_ns() // 1000)
        channel.basic_publish(settings.exchange, "save.pose", body,
                              pika.BasicProperties(delivery_mode=2))
    connection.close()
    while count_results(database_url) < total:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    with psycopg.connect(database_url) as db:
        rows = db.execute(
            "SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1e6 "
            "- (data->>'sent_at_us')::numeric FROM results "
            "WHERE data->>'sent_at_us' IS NOT NULL").fetchall()
    millis = sorted(float(value) / 1000 for (value,) in rows)

    def pick(q: float) -> float:
        return millis[min(len(millis) - 1, int(q * len(millis)))]

    return {"rate": rate, "messages": len(millis), "p50_ms": pick(0.50),
            "p90_ms": pick(0.90), "p99_ms": pick(0.99), "max_ms": millis[-1]}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    rabbit = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "rabbitmq-server"],
                            capture_output=True, text=True).stdout
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "pika": pika.__version__, "psycopg": psycopg.__version__,
            "rabbitmq": rabbit, "postgresql": "15"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--skip-latency", action="store_true")
    arguments = parser.parse_args()
    count = arguments.messages

    work = Path(tempfile.mkdtemp(prefix="brain-storm-bench-"))
    postgres = PostgresServer(durable=True)
    with open(postgres.data / "postgresql.conf", "a") as conf:
        conf.write("track_commit_timestamp = on\n")
    postgres.start()
    rabbitmq = RabbitMQServer(work / "rabbitmq")
    rabbitmq.start()
    figures: dict = {"messages": count, "machine": machine()}
    try:
        amqp = rabbitmq.url
        runs = figures["runs"] = {}

        prepare_queue(amqp, "bench_raw", count)
        runs["raw"] = run_baseline("raw", amqp, "bench_raw", count)
        print("raw", runs["raw"], flush=True)

        prepare_queue(amqp, "bench_raw_multi", count)
        runs["raw multi-ack"] = run_baseline("raw-multi", amqp, "bench_raw_multi",
                                             count)
        print("raw multi-ack", runs["raw multi-ack"], flush=True)

        naive_db = postgres.create_database("bench_naive")
        prepare_queue(amqp, "bench_naive", count)
        runs["naive"] = run_baseline("naive", amqp, "bench_naive", count, naive_db)
        print("naive", runs["naive"], flush=True)

        pg = postgres.create_database("bench_pg")
        prepare_queue(amqp, "bench_pg", count)
        runs["run-saver pg"] = run_saver(pg, amqp, "bench_pg", count, work / "pg.log")
        print("run-saver pg", runs["run-saver pg"], flush=True)

        sqlite = f"sqlite:///{work / 'bench.sqlite3'}"
        prepare_queue(amqp, "bench_sqlite", count)
        runs["run-saver sqlite"] = run_saver(sqlite, amqp, "bench_sqlite", count,
                                             work / "sqlite.log")
        print("run-saver sqlite", runs["run-saver sqlite"], flush=True)

        raw, naive = runs["raw"]["rate"], runs["naive"]["rate"]
        figures["ratios"] = {
            name: {"vs_raw": run["rate"] / raw, "vs_naive": run["rate"] / naive}
            for name, run in runs.items()
        }
        if not arguments.skip_latency:
            # Half the PostgreSQL rate, as asked of the saver, and a quarter: on
            # two cores the publisher competes with broker, database and saver.
            figures["latency"] = []
            for share in (0.5, 0.25):
                name = f"bench_latency_{int(share * 100)}"
                figures["latency"].append(latency(
                    postgres.create_database(name), amqp, name,
                    runs["run-saver pg"]["rate"] * share,
                    arguments.latency_seconds, work / f"{name}.log"))
                print("latency", figures["latency"][-1], flush=True)
    finally:
        rabbitmq.stop()
        postgres.stop()
        postgres.remove()

    report(figures)
    out = ROOT / "bench" / "results" / "latest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")


def report(figures: dict) -> None:
    print(f"\n{figures['messages']} pose messages, {figures['machine']['cores']} "
          f"cores, {figures['machine']['cpu']}")
    print(f"{'contender':<18} {'msg/s':>9} {'peak RSS MiB':>13} {'× raw':>7} "
          f"{'× naive':>8}   CPU µs/msg: consumer broker database")
    for name, run in figures["runs"].items():
        ratio = figures["ratios"][name]
        print(f"{name:<18} {run['rate']:>9.0f} {run['rss_mib']:>13.1f} "
              f"{ratio['vs_raw']:>7.2f} {ratio['vs_naive']:>8.2f}   "
              f"{run['cpu_us_consumer']:>19.1f} {run['cpu_us_broker']:>6.1f} "
              f"{run['cpu_us_database']:>8.1f}")
    for lat in figures.get("latency", []):
        print(f"latency at {lat['rate']:.0f} msg/s ({lat['messages']} messages): "
              f"p50 {lat['p50_ms']:.1f} ms, p90 {lat['p90_ms']:.1f} ms, "
              f"p99 {lat['p99_ms']:.1f} ms, max {lat['max_ms']:.1f} ms")


if __name__ == "__main__":
    main()
