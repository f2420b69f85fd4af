"""URL helpers shared by drivers, the saver and the operator.

The rule they exist for: a password never reaches a log line, a status field,
an event or a metric.  Every URL is passed through :func:`mask_url` before it
is shown to anybody, and every message a database library writes about a URL
through :func:`redact`, since such messages may quote the password.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

QUEUE_SCHEMES = {"rabbitmq": "amqp", "rabbitmqs": "amqps", "amqp": "amqp",
                 "amqps": "amqps"}
"""Queue URL schemes run-saver accepts, each mapped to the AMQP scheme pika reads."""

# scheme://user:password@ — everything up to the last '@' before the query is
# user-info, so a password holding '/', ':' or '@' is masked whole.
_AUTHORITY_USERINFO = re.compile(r"(?i)^([a-z][a-z0-9+.-]*://)([^?#]*)@")
# user:password@ without a scheme (a URL that lost its "://").
_BARE_USERINFO = re.compile(r"([^:/@\s]+):[^@\s]*@")
# password=... in a query string or a libpq "key=value" connection string.
_SECRET_PARAMETER = re.compile(
    r"(?i)(\b(?:password|passwd|pwd|secret|token|sslpassword)\s*=\s*)"
    r"('[^']*'|[^&\s]*)"
)


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``.

    Works textually, so URLs that do not parse cleanly are masked too.
    """
    masked = url
    authority = _AUTHORITY_USERINFO.match(url)
    if authority:
        scheme, userinfo = authority.groups()
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            masked = f"{scheme}{user}:***@{url[authority.end():]}"
    elif "://" not in url:
        masked = _BARE_USERINFO.sub(r"\1:***@", url)
    return _SECRET_PARAMETER.sub(r"\1***", masked)


def password_of(url: str) -> str:
    """The password in ``url`` as written (possibly percent-encoded), or ``""``."""
    authority = _AUTHORITY_USERINFO.match(url)
    if authority and ":" in authority.group(2):
        return authority.group(2).split(":", 1)[1]
    parameter = _SECRET_PARAMETER.search(url)
    return parameter.group(2).strip("'") if parameter else ""


def redact(text: str, url: str) -> str:
    """``text`` with the password of ``url`` removed, however it is quoted.

    For messages of database libraries, which may repeat a password from the
    URL they were given (libpq does, when it cannot parse it).
    """
    password = password_of(url)
    if not password:
        return text
    for form in {password, unquote(password, errors="replace")}:
        if len(form) >= 2:
            text = text.replace(form, "***")
    return text


def url_scheme(url: str) -> str:
    """The lower-cased scheme of ``url``, or ``""`` when it has none."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep else ""
