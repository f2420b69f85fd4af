"""URL helpers shared by drivers, the saver and the operator.

The rule they exist for: a password never reaches a log line, a status field,
an event or a metric.  Every URL is passed through :func:`mask_url` before it is
shown to anybody.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_SECRET_QUERY = re.compile(
    r"(?i)([?&](?:password|passwd|pwd|secret|token|sslpassword|authSource_password)=)"
    r"[^&]*"
)


QUEUE_SCHEMES = {"rabbitmq": "amqp", "rabbitmqs": "amqps", "amqp": "amqp",
                 "amqps": "amqps"}
"""Queue URL schemes run-saver accepts, each mapped to the AMQP scheme pika reads."""

_USERINFO = re.compile(r"([^:/@\s]+):[^@/\s]*@")


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``.

    Works on URLs that do not parse cleanly too: the user-info part before the
    last ``@`` of the authority is masked textually.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    masked = url
    userinfo, at, hostinfo = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        masked = urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))
    # A URL that lost its scheme or its slashes hides its user-info from
    # urlsplit: mask anything shaped like user:password@ all the same.
    masked = _USERINFO.sub(r"\1:***@", masked)
    return _SECRET_QUERY.sub(r"\1***", masked)


def url_scheme(url: str) -> str:
    """The lower-cased scheme of ``url``, or ``""`` when it has none."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep else ""
