"""Driver discovery: URL schemes, synonyms, drop-in plugin files and entry points.

Plugins are real files: a ``<scheme>_.py`` written to a temporary folder that
is added to ``brain_storm.databases.__path__`` for the test, and a tiny
installed distribution (a ``*.dist-info`` folder on ``sys.path``) for entry
points.  No test touches the real package folder or connects to a server.
"""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

import brain_storm.databases as databases
from brain_storm.databases import (
    LegacyDriver,
    connect,
    find_driver_class,
    known_schemes,
)
from brain_storm.databases.mongodb_ import MongoDBDriver
from brain_storm.databases.postgresql_ import PostgreSQLDriver
from brain_storm.databases.sqlite_ import SQLiteDriver
from brain_storm.errors import (
    ConfigurationError,
    InvalidMessageError,
    InvalidURLError,
    MissingDriverError,
    UnknownSchemeError,
)
from brain_storm.saver import Saver

POSE = '{"userId": "7", "datetime": "1575446887339", "pose": {"x": 0.5}}'
USER = b'{"userId": "7", "username": "dan"}'

# A plugin in the original style: one plain class, told (host, port), that is
# handed each message as JSON text with its topic.  It records what it gets.
RECORDER = '''
"""A seed-style database plugin that remembers every call."""

calls = []


class Recorder:
    def __init__(self, host: str, port: int) -> None:
        calls.append(("init", host, port))

    def save(self, data, field):
        calls.append(("save", data, field))
'''

DriverFolder = Callable[[str, str], str]


@pytest.fixture
def driver_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DriverFolder]:
    """Drop ``<scheme>_.py`` files into a folder the registry searches."""
    folder = tmp_path / "drivers"
    folder.mkdir()
    monkeypatch.setattr(databases, "__path__", [*databases.__path__, str(folder)])
    added: list[str] = []

    def add(scheme: str, source: str) -> str:
        (folder / f"{scheme}_.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        added.append(f"{scheme}_")
        return f"{databases.__name__}.{scheme}_"

    yield add
    for name in added:
        sys.modules.pop(f"{databases.__name__}.{name}", None)
        if hasattr(databases, name):
            delattr(databases, name)


def plugin(module_name: str) -> ModuleType:
    return sys.modules[module_name]


@pytest.fixture
def installed_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[dict[str, str], str], None]]:
    """Install a distribution whose entry points name classes in one module."""
    site = tmp_path / "site"
    site.mkdir()
    module_names: list[str] = []

    def install(entry_points: dict[str, str], source: str) -> None:
        module_name = "brain_storm_test_plugin"
        (site / f"{module_name}.py").write_text(textwrap.dedent(source))
        dist_info = site / "brain_storm_test_plugin-1.0.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: brain-storm-test-plugin\nVersion: 1.0\n"
        )
        lines = [f"{name} = {module_name}:{target}"
                 for name, target in entry_points.items()]
        (dist_info / "entry_points.txt").write_text(
            "[brain_storm.databases]\n" + "\n".join(lines) + "\n"
        )
        monkeypatch.syspath_prepend(str(site))
        importlib.invalidate_caches()
        module_names.append(module_name)

    yield install
    for name in module_names:
        sys.modules.pop(name, None)
    importlib.invalidate_caches()


# -- built-in schemes -------------------------------------------------------------


@pytest.mark.parametrize("scheme, driver_class", [
    ("sqlite", SQLiteDriver),
    ("sqlite3", SQLiteDriver),
    ("postgresql", PostgreSQLDriver),
    ("postgres", PostgreSQLDriver),
    ("postgresql+psycopg", PostgreSQLDriver),
    ("mongodb", MongoDBDriver),
    ("mongodb+srv", MongoDBDriver),
])
def test_every_built_in_scheme_and_synonym_finds_its_driver(
    scheme: str, driver_class: type
) -> None:
    assert find_driver_class(scheme) is driver_class
    assert scheme in known_schemes()


@pytest.mark.parametrize("url, driver_class", [
    ("sqlite:///:memory:", SQLiteDriver),
    ("SQLite3:///:memory:", SQLiteDriver),
    ("postgres://u:pw@127.0.0.1:1/x", PostgreSQLDriver),
    ("postgresql+psycopg://u:pw@127.0.0.1:1/x", PostgreSQLDriver),
    ("mongodb://127.0.0.1:1/x", MongoDBDriver),
])
def test_connect_builds_the_driver_of_a_url_without_connecting(
    url: str, driver_class: type
) -> None:
    with connect(url) as driver:
        assert type(driver) is driver_class


def test_a_synonym_url_reaches_libpq_under_the_scheme_it_understands() -> None:
    driver = connect("postgresql+psycopg://u@127.0.0.1:1/x")
    assert driver.conninfo == "postgresql://u@127.0.0.1:1/x"


def test_an_unknown_scheme_fails_with_the_list_of_known_schemes() -> None:
    with pytest.raises(UnknownSchemeError) as caught:
        connect("cassandra://127.0.0.1:9042/x")
    error = caught.value
    assert error.scheme == "cassandra"
    assert error.known == known_schemes()
    assert isinstance(error, ConfigurationError)
    for scheme in ("sqlite", "sqlite3", "postgresql", "postgres", "mongodb"):
        assert scheme in str(error)


@pytest.mark.parametrize("url", [
    "brain_storm.sqlite3", "/var/lib/brain_storm.sqlite3", "sqlite:/x.db", "", "://x",
])
def test_a_url_without_a_scheme_is_an_invalid_url(url: str) -> None:
    with pytest.raises(InvalidURLError):
        connect(url)


@pytest.mark.parametrize("url", [
    "postgresql//u:hunter2secret@127.0.0.1/x",  # the ':' forgotten
    "u:hunter2secret@127.0.0.1/x",
    "//u:hunter2secret@127.0.0.1/x",
])
def test_an_invalid_url_error_never_shows_the_password(url: str) -> None:
    with pytest.raises(InvalidURLError) as caught:
        connect(url)
    assert "hunter2secret" not in str(caught.value)


@pytest.mark.parametrize("package, scheme, extra", [
    ("psycopg", "postgresql", "postgresql"),
    ("psycopg", "postgres", "postgresql"),
    ("pymongo", "mongodb", "mongodb"),
    ("pymongo", "mongodb+srv", "mongodb"),
])
def test_a_built_in_driver_without_its_package_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, package: str, scheme: str, extra: str
) -> None:
    # Given the optional package cannot be imported, and the driver not yet loaded
    monkeypatch.setitem(sys.modules, package, None)
    module = f"{databases.__name__}.{databases.SYNONYMS.get(scheme, scheme)}_"
    monkeypatch.delitem(sys.modules, module, raising=False)

    # When a URL of its scheme is used
    with pytest.raises(MissingDriverError) as caught:
        Saver(f"{scheme}://127.0.0.1:1/x")

    # Then the error names the package and the pip extra that brings it
    assert repr(package) in str(caught.value)
    assert f"brain-storm[{extra}]" in str(caught.value)


# -- drop-in plugin files -----------------------------------------------------------


def test_a_seed_style_plugin_file_serves_its_scheme(
    driver_folder: DriverFolder,
) -> None:
    # Given a recorder_.py plugin dropped into the drivers folder
    module_name = driver_folder("recorder", RECORDER)

    # When a saver is made for its scheme and given messages of two topics
    with Saver("recorder://127.0.0.1:27017/ignored") as saver:
        saver.save("pose", POSE)
        saver.save("user", USER)

    # Then the plugin was told the host and port, then got each message's JSON
    # text as it arrived, with its topic as the field
    assert "recorder" in known_schemes()
    assert isinstance(saver.driver, LegacyDriver)
    assert plugin(module_name).calls == [
        ("init", "127.0.0.1", 27017),
        ("save", POSE, "pose"),
        ("save", USER.decode(), "user"),
    ]


def test_bad_messages_never_reach_a_plugin(driver_folder: DriverFolder) -> None:
    module_name = driver_folder("recorder", RECORDER)
    with Saver("recorder://127.0.0.1:27017") as saver:
        # When one bad message is saved alone and others inside a batch
        with pytest.raises(InvalidMessageError):
            saver.save("pose", '{"userId": "7", "pose": {}}')
        outcomes = saver.save_many([
            ("pose", b"{not json"), ("pose", POSE), ("Bad Topic", POSE),
            ("pose", '{"userId": -1, "datetime": 1, "pose": 1}'),
        ])

    # Then only the valid message reached the plugin, and the others were refused
    assert [outcome is None for outcome in outcomes] == [False, True, False, False]
    saves = [call for call in plugin(module_name).calls if call[0] == "save"]
    assert saves == [("save", POSE, "pose")]


def test_a_plugin_gets_each_message_as_text_it_can_decode(
    driver_folder: DriverFolder,
) -> None:
    module_name = driver_folder("recorder", RECORDER)
    body = json.dumps({"userId": 7, "datetime": 1, "pose": {"name": "ünï ✓"}},
                      ensure_ascii=False).encode()
    with Saver("recorder://127.0.0.1:27017") as saver:
        saver.save("pose", body)
    (_, data, field), = [c for c in plugin(module_name).calls if c[0] == "save"]
    assert (json.loads(data), field) == (json.loads(body), "pose")


def test_a_plugin_with_a_bad_port_is_an_invalid_url(
    driver_folder: DriverFolder,
) -> None:
    driver_folder("recorder", RECORDER)
    with pytest.raises(InvalidURLError):
        connect("recorder://127.0.0.1:notaport")


def test_a_plugin_that_is_a_driver_is_built_from_the_whole_url(
    driver_folder: DriverFolder,
) -> None:
    module_name = driver_folder("memo", '''
        from brain_storm.databases.base import Driver


        class MemoDriver(Driver):
            def __init__(self, url):
                self.url = url

            @classmethod
            def from_url(cls, url):
                return cls(url)

            def save_batch(self, batch): ...
            def get_users(self): ...
            def get_one_user(self, user_id): ...
            def get_snapshots(self, user_id): ...
            def get_one_snapshot(self, user_id, snapshot_id): ...
            def get_result(self, user_id, snapshot_id, result_name): ...
    ''')
    driver = connect("memo://u:pw@127.0.0.1:1/db?x=1")
    assert type(driver) is plugin(module_name).MemoDriver
    assert driver.url == "memo://u:pw@127.0.0.1:1/db?x=1"


def test_classes_a_plugin_imports_are_not_counted_as_its_driver(
    driver_folder: DriverFolder,
) -> None:
    module_name = driver_folder("recorder", "from collections import OrderedDict\n"
                                + RECORDER)
    assert find_driver_class("recorder") is plugin(module_name).Recorder


@pytest.mark.parametrize("source", [
    RECORDER + "\n\nclass Second:\n    def save(self, data, field): ...\n",
    '"""A plugin that forgot its class."""\n\nVALUE = 1\n',
])
def test_a_plugin_file_must_define_exactly_one_driver_class(
    driver_folder: DriverFolder, source: str
) -> None:
    driver_folder("twice", source)
    with pytest.raises(ConfigurationError, match="exactly one driver class"):
        connect("twice://127.0.0.1:1")


def test_a_plugin_file_needing_an_absent_package_names_it(
    driver_folder: DriverFolder,
) -> None:
    driver_folder("needy", "import brain_storm_no_such_package\n" + RECORDER)
    with pytest.raises(MissingDriverError, match="brain_storm_no_such_package"):
        connect("needy://127.0.0.1:1")


# -- entry points ---------------------------------------------------------------------


def test_an_entry_point_registers_a_scheme(
    installed_plugin: Callable[[dict[str, str], str], None],
) -> None:
    # Given an installed distribution registering "entrydb" in the entry-point group
    installed_plugin({"entrydb": "Recorder"}, RECORDER)

    # When a saver is made for that scheme and saves a message
    with Saver("entrydb://127.0.0.1:6000") as saver:
        saver.save("pose", POSE)

    # Then the scheme is known and the plugin's class got the message
    recorder = sys.modules["brain_storm_test_plugin"]
    assert "entrydb" in known_schemes()
    assert find_driver_class("entrydb") is recorder.Recorder
    assert recorder.calls == [
        ("init", "127.0.0.1", 6000), ("save", POSE, "pose")]


def test_an_entry_point_cannot_take_over_a_built_in_scheme(
    installed_plugin: Callable[[dict[str, str], str], None],
) -> None:
    installed_plugin({"sqlite": "Recorder", "other": "Recorder"}, RECORDER)
    assert find_driver_class("other").__name__ == "Recorder"
    assert find_driver_class("sqlite") is SQLiteDriver
    assert known_schemes().count("sqlite") == 1
