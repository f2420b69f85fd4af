"""Real servers for the tests and benchmarks, each started in its own folder.

PostgreSQL and RabbitMQ come from Debian's packages, the MongoDB test server
from SecantusDB (a MongoDB wire-protocol server in a Python wheel: no real
MongoDB server can run on these machines).  Every server listens on
127.0.0.1 only, on a free port, with a password, and can be stopped,
started and killed by a test to play a fault.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PASSWORD = "pw-Secret-42!"  # the tests assert it never reaches a log line
PG_BIN = Path("/usr/lib/postgresql/15/bin")
RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _wait_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


class PostgresServer:
    """A throw-away PostgreSQL cluster with a password-protected user."""

    user = "saver"

    def __init__(self, *, durable: bool = False) -> None:
        """``durable`` keeps PostgreSQL's default fsync and synchronous commit,
        as in production; tests turn them off to run faster."""
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(f"PostgreSQL is not installed ({PG_BIN}): run .ci/run")
        # A folder of its own in /tmp: as root, the cluster runs as the postgres
        # user, who cannot enter pytest's private temporary folders.
        root = Path(tempfile.mkdtemp(prefix="brain-storm-postgres-"))
        self.root = root
        self.data = root / "pgdata"
        self.port = free_port()
        if os.geteuid() == 0:
            postgres = pwd.getpwnam("postgres")
            os.chown(root, postgres.pw_uid, postgres.pw_gid)
        pwfile = root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            os.chown(pwfile, postgres.pw_uid, postgres.pw_gid)
        subprocess.run(
            [*_as_postgres(), str(PG_BIN / "initdb"), "-D", str(self.data),
             "-U", self.user, "--pwfile", str(pwfile), "--auth", "scram-sha-256",
             "-E", "UTF8", "--locale", "C.UTF-8"],
            check=True, capture_output=True,
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{root}'\nmax_connections = 200\n"
            )
            if not durable:
                conf.write("fsync = off\nsynchronous_commit = off\n"
                           "full_page_writes = off\n")

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{PASSWORD}@127.0.0.1:{self.port}/brain_storm"

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [*_as_postgres(), str(PG_BIN / "pg_ctl"), "-D", str(self.data),
             "-l", str(self.root / "postgres.log"), *args],
            check=True, capture_output=True,
        )

    def start(self) -> None:
        self._ctl("-w", "-t", "60", "start")

    def stop(self) -> None:
        self._ctl("-w", "-m", "fast", "stop")

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.admin_url(), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.admin_url(name)


class RabbitMQServer:
    """A RabbitMQ node of its own: own name, ports, data and password."""

    user = "saver"

    def __init__(self, root: Path, extra_config: str = "") -> None:
        if not (RABBITMQ_BIN / "rabbitmq-server").exists():
            raise RuntimeError("RabbitMQ is not installed: run .ci/run")
        self.root = root
        self.port = free_port()
        self.node = f"bst{self.port}@localhost"
        root.mkdir(parents=True, exist_ok=True)
        (root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            f"default_user = {self.user}\ndefault_pass = {PASSWORD}\n"
            "loopback_users = none\n" + extra_config
        )
        (root / "enabled_plugins").write_text("[].\n")
        self.env = {
            **os.environ,
            "HOME": str(root),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(root / "rabbitmq.pid"),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://{self.user}:{PASSWORD.replace('!', '%21')}@127.0.0.1:{self.port}/%2F"

    def ctl(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node, *args],
            env=self.env, capture_output=True, text=True, check=check, timeout=120,
        )
        return done.stdout

    def start(self) -> None:
        log = open(self.root / "server.log", "ab")
        self.process = subprocess.Popen(
            [str(RABBITMQ_BIN / "rabbitmq-server")],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.ctl("wait", str(self.root / "rabbitmq.pid"), "--timeout", "120")
        _wait_port(self.port, 60)

    def stop(self) -> None:
        if self.process is None:
            return
        self.ctl("stop", check=False)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None

    def kill(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def queue_counts(self) -> dict[str, tuple[int, int]]:
        """Each queue's (ready, unacknowledged) message counts."""
        out = self.ctl("list_queues", "-q", "--no-table-headers", "name",
                       "messages_ready", "messages_unacknowledged")
        counts = {}
        for line in out.splitlines():
            name, ready, unacked = line.split("\t")
            counts[name] = (int(ready), int(unacked))
        return counts


class MongoServer:
    """SecantusDB, standing in for MongoDB (none can run here)."""

    def __init__(self, root: Path) -> None:
        beside_python = Path(sys.executable).parent / "secantusd-py"
        self.executable = (str(beside_python) if beside_python.exists()
                           else shutil.which("secantusd-py") or str(beside_python))
        self.root = root
        self.port = free_port()
        root.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/brain_storm"

    def start(self) -> None:
        log = open(self.root / "secantus.log", "ab")
        self.process = subprocess.Popen(
            [self.executable, "--host", "127.0.0.1", "--port", str(self.port),
             "--storage-path", str(self.root / "data"), "--log-level", "WARNING"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        _wait_port(self.port, 60)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
