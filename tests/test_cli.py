"""The command line, run as a real subprocess: exit codes, messages, what it saves.

Every test runs ``python -m brain_storm.saver`` in a clean environment (no
BRAIN_STORM_* variables) on SQLite files in its own temporary folder, and
reads the results back through the Python API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from brain_storm.saver import Saver

REPO = Path(__file__).parent.parent
EXAMPLES = REPO / "examples" / "messages"
POSE_FILE = EXAMPLES / "pose" / "flat.json"
POSE_MS = 1_575_446_887_339
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
TIMEOUT_S = 60


def run(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    stdin: bytes = b"",
) -> subprocess.CompletedProcess[str]:
    """Run the saver's CLI with only ``env`` added to a clean environment."""
    environment = {
        name: value for name, value in os.environ.items()
        if not name.startswith("BRAIN_STORM_")
    }
    environment["PYTHONPATH"] = str(REPO)
    environment.update(env or {})
    completed = subprocess.run(
        [sys.executable, "-m", "brain_storm.saver", *args],
        cwd=cwd, env=environment, input=stdin, capture_output=True,
        timeout=TIMEOUT_S, check=False,
    )
    return subprocess.CompletedProcess(
        completed.args, completed.returncode,
        completed.stdout.decode(errors="replace"),
        completed.stderr.decode(errors="replace"),
    )


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return sqlite_url(tmp_path / "saved.sqlite3")


def test_save_of_a_file_stores_its_result(tmp_path: Path, url: str) -> None:
    # When the pose example is saved from its file
    done = run("save", "-d", url, "pose", str(POSE_FILE), cwd=tmp_path)

    # Then the command succeeds and the result reads back as the file holds it
    assert done.returncode == EXIT_OK, done.stderr
    with Saver(url) as saver:
        assert saver.get_result(42, POSE_MS, "pose") == json.loads(
            POSE_FILE.read_text())["pose"]


def test_save_of_stdin_stores_its_result(tmp_path: Path, url: str) -> None:
    body = b'{"userId": "7", "datetime": "1600000000123", "feelings": {"thirst": 0.5}}'
    done = run("save", "--database", url, "feelings", "-", cwd=tmp_path, stdin=body)
    assert done.returncode == EXIT_OK, done.stderr
    with Saver(url) as saver:
        assert saver.get_result("7", 1600000000123, "feelings") == {"thirst": 0.5}


def test_save_uses_the_database_url_from_the_environment_when_not_given(
    tmp_path: Path,
) -> None:
    url = sqlite_url(tmp_path / "from-env.sqlite3")
    done = run("save", "pose", str(POSE_FILE), cwd=tmp_path,
               env={"BRAIN_STORM_DATABASE_URL": url})
    assert done.returncode == EXIT_OK, done.stderr
    assert not (tmp_path / "brain_storm.sqlite3").exists()
    with Saver(url) as saver:
        assert saver.get_one_snapshot(42, POSE_MS)["results"] == ["pose"]


def test_an_explicit_database_wins_over_the_environment(
    tmp_path: Path, url: str
) -> None:
    other = tmp_path / "from-env.sqlite3"
    done = run("save", "-d", url, "pose", str(POSE_FILE), cwd=tmp_path,
               env={"BRAIN_STORM_DATABASE_URL": sqlite_url(other)})
    assert done.returncode == EXIT_OK, done.stderr
    assert not other.exists()
    with Saver(url) as saver:
        assert saver.get_one_snapshot(42, POSE_MS)["results"] == ["pose"]


def test_save_without_any_url_writes_brain_storm_sqlite3_in_the_working_folder(
    tmp_path: Path,
) -> None:
    done = run("save", "pose", str(POSE_FILE), cwd=tmp_path)
    assert done.returncode == EXIT_OK, done.stderr
    database = tmp_path / "brain_storm.sqlite3"
    assert database.is_file()
    with Saver(sqlite_url(database)) as saver:
        assert saver.get_one_snapshot(42, POSE_MS)["results"] == ["pose"]


def test_save_all_of_the_examples_saves_every_file(tmp_path: Path, url: str) -> None:
    # Given the repository's example messages, one file each
    files = sorted(EXAMPLES.glob("*/*.json"))

    # When the whole folder is saved
    done = run("save-all", "-d", url, str(EXAMPLES), cwd=tmp_path)

    # Then every file is saved, and the summary says so with the URL
    assert done.returncode == EXIT_OK, done.stderr
    assert f"saved {len(files)} of {len(files)} messages to {url}" in done.stdout
    with Saver(url) as saver:
        assert [user["user_id"] for user in saver.get_users()] == [42, 2**64 - 1]
        stored = sum(len(saver.get_one_snapshot(user["user_id"], s["snapshot_id"])
                         ["results"])
                     for user in saver.get_users()
                     for s in saver.get_snapshots(user["user_id"]))
    assert stored == sum(1 for path in files if path.parent.name != "user")


def test_bad_json_fails_with_one_error_line_and_saves_nothing(
    tmp_path: Path, url: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"userId": "7", "datetime": 1, "pose": ')
    done = run("save", "-d", url, "pose", str(bad), cwd=tmp_path)
    assert done.returncode == EXIT_FAILED
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: ")
    assert "Traceback" not in done.stderr
    with Saver(url) as saver:
        assert saver.get_users() == []


def test_save_all_reports_each_bad_file_and_saves_the_good_ones(
    tmp_path: Path, url: str
) -> None:
    folder = tmp_path / "messages"
    (folder / "pose").mkdir(parents=True)
    (folder / "pose" / "good.json").write_bytes(POSE_FILE.read_bytes())
    (folder / "pose" / "bad.json").write_text("{")
    done = run("save-all", "-d", url, str(folder), cwd=tmp_path)
    assert done.returncode == EXIT_FAILED
    (line,) = error_lines(done.stderr)
    assert line.startswith(f"error: {folder / 'pose' / 'bad.json'}: body is not JSON")
    assert "saved 1 of 2 messages" in done.stdout
    with Saver(url) as saver:
        assert saver.get_one_snapshot(42, POSE_MS)["results"] == ["pose"]


def test_a_missing_file_fails_with_an_error(tmp_path: Path, url: str) -> None:
    missing = tmp_path / "missing.json"
    done = run("save", "-d", url, "pose", str(missing), cwd=tmp_path)
    assert done.returncode == EXIT_FAILED
    assert error_lines(done.stderr) == [
        f"error: cannot read {missing}: No such file or directory"]


def test_an_unknown_scheme_is_a_usage_error_listing_known_schemes(
    tmp_path: Path,
) -> None:
    done = run("save", "-d", "cassandra://127.0.0.1:9042/x", "pose", str(POSE_FILE),
               cwd=tmp_path)
    assert done.returncode == EXIT_USAGE
    (line,) = error_lines(done.stderr)
    assert "'cassandra'" in line
    assert "known schemes:" in line
    for scheme in ("sqlite", "postgresql", "mongodb"):
        assert scheme in line


@pytest.mark.parametrize("log_level", ["INFO", "DEBUG"])
@pytest.mark.parametrize("how", ["argument", "environment"])
def test_an_unreachable_postgresql_fails_without_showing_its_password(
    tmp_path: Path, log_level: str, how: str
) -> None:
    # Given a PostgreSQL URL with a password, on a port nothing listens on
    url = "postgresql://u:hunter2secret@127.0.0.1:1/x"
    if how == "argument":
        args, env = ["-d", url], {}
    else:
        args, env = [], {"BRAIN_STORM_DATABASE_URL": url}

    # When a message is saved to it
    done = run("--log-level", log_level, "save", *args, "pose", str(POSE_FILE),
               cwd=tmp_path, env=env)

    # Then the command fails, and the password is in neither output
    assert done.returncode == EXIT_FAILED
    assert error_lines(done.stderr)
    assert "hunter2secret" not in done.stdout + done.stderr


def test_run_saver_without_urls_is_a_usage_error(tmp_path: Path) -> None:
    done = run("run-saver", cwd=tmp_path)
    assert done.returncode == EXIT_USAGE
    (line,) = error_lines(done.stderr)
    assert "DB_URL and MQ_URL" in line
    assert "BRAIN_STORM_DATABASE_URL" in line and "BRAIN_STORM_QUEUE_URL" in line


def test_run_saver_with_only_a_database_url_is_a_usage_error(
    tmp_path: Path, url: str
) -> None:
    done = run("run-saver", url, cwd=tmp_path)
    assert done.returncode == EXIT_USAGE
    assert "MQ_URL" in error_lines(done.stderr)[0]


@pytest.mark.parametrize("command", [[], ["save"], ["save-all"], ["run-saver"],
                                     ["publish"]])
def test_help_of_every_command_exits_0(tmp_path: Path, command: list[str]) -> None:
    done = run(*command, "--help", cwd=tmp_path)
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout.startswith("usage: python -m brain_storm.saver")
    assert done.stderr == ""


@pytest.mark.parametrize("url", [
    "postgresql://saver:Sup3r%zzSecret@127.0.0.1:1/x",
    "postgresql://saver:Sup3r/Secret@127.0.0.1:1/x",
    "host=127.0.0.1 port=1 password=Sup3rSecret dbname=x",
    "mongodb://saver:Sup3r/Secret@127.0.0.1:1/x",
])
def test_a_malformed_url_is_refused_without_its_password(tmp_path: Path, url: str) -> None:
    done = run("save", "-d", url, "pose", str(POSE_FILE), cwd=tmp_path)
    assert done.returncode in (1, 2)
    assert "Sup3r" not in done.stdout + done.stderr
    assert done.stderr.startswith("error: ")
