"""Passwords never leave a URL: masking and redaction (brain_storm/urls.py)."""

from __future__ import annotations

import pytest

from brain_storm.urls import mask_url, redact

SECRET = "Sup3r/S:e@cret"


@pytest.mark.parametrize("url, masked", [
    ("amqp://u:p@h/%2F", "amqp://u:***@h/%2F"),
    ("amqp://user:pa/ss@host/", "amqp://user:***@host/"),
    ("mongodb://u:p@a:1,b:2/x", "mongodb://u:***@a:1,b:2/x"),
    ("postgresql://h/db?password=abc&x=1", "postgresql://h/db?password=***&x=1"),
    ("host=127.0.0.1 password=abc dbname=x", "host=127.0.0.1 password=*** dbname=x"),
    ("postgresql//u:hunter2@127.0.0.1/x", "postgresql//u:***@127.0.0.1/x"),
    ("u:hunter2@127.0.0.1/x", "u:***@127.0.0.1/x"),
    ("sqlite:///a.db", "sqlite:///a.db"),
    ("mongodb://u@h/db", "mongodb://u@h/db"),
])
def test_mask_url_hides_the_password_however_the_url_is_written(
    url: str, masked: str
) -> None:
    assert mask_url(url) == masked


def test_a_password_with_slashes_colons_and_at_signs_is_masked_whole() -> None:
    url = f"postgresql://saver:{SECRET}@127.0.0.1:5432/db"
    assert mask_url(url) == "postgresql://saver:***@127.0.0.1:5432/db"


def test_redact_removes_the_password_a_library_quotes_back() -> None:
    url = "postgresql://saver:Sup3r%zzSecret@127.0.0.1/db"
    message = 'invalid percent-encoded token: "Sup3r%zzSecret"'
    assert redact(message, url) == 'invalid percent-encoded token: "***"'
    assert redact("login failed for p@ss", "amqp://u:p%40ss@h/") == (
        "login failed for ***")
