"""Who may connect to an rtseg server: a token for anything bound beyond the loopback.

The rule is Jupyter's. A server on 127.0.0.1 / ::1 / localhost answers as before (only this machine reaches it).
Bound to any other address (0.0.0.0, a LAN address), it asks every request for a token: one given with
``--token`` or the ``RTSEG_TOKEN`` environment variable, else one generated here and printed once, inside the URL
to open. ``--no-auth`` opts out, explicitly, with a warning.

A client presents the token as ``Authorization: Bearer TOKEN``, as ``?token=TOKEN`` on the URL, or (a browser,
after opening that URL once) as a cookie the server set; tokens are compared as SHA-256 digests with
:func:`hmac.compare_digest` (constant time), and the servers keep only the digest. The token is never written to
a log, a stats file or a manifest: the one line that prints it is the one that tells the user the URL.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from .errors import RtsegError

TOKEN_ENV = "RTSEG_TOKEN"
MIN_LENGTH = 8


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    host = (host or "").strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Access:
    """The policy of one server: ``token_sha256`` None means open (the loopback, or ``--no-auth``)."""

    token_sha256: str | None = None
    port: int = 0

    @property
    def required(self) -> bool:
        return self.token_sha256 is not None

    @property
    def cookie_name(self) -> str:
        # browsers share cookies across the ports of one host: one name per port keeps two servers apart
        return f"rtseg_token_{self.port}"

    def check(self, token: str | None) -> bool:
        """True if ``token`` is the server's (always True when no token is required)."""
        if self.token_sha256 is None:
            return True
        if not token:
            return False
        return hmac.compare_digest(digest(token), self.token_sha256)

    def presented(self, authorization: str | None = None, cookie: str | None = None,
                  query: str | None = None) -> tuple[str | None, str]:
        """The token a request carries and where: ("TOKEN", "header" | "query" | "cookie") or (None, "")."""
        if authorization:
            scheme, _, value = authorization.strip().partition(" ")
            if scheme.lower() in ("bearer", "token") and value.strip():
                return value.strip(), "header"
        if query:
            values = parse_qs(query).get("token")
            if values:
                return values[-1], "query"
        if cookie:
            try:
                jar = SimpleCookie(cookie)
            except CookieError:
                jar = {}
            if self.cookie_name in jar:
                return jar[self.cookie_name].value, "cookie"
        return None, ""

    def allows(self, authorization: str | None = None, cookie: str | None = None, query: str | None = None) -> bool:
        return self.check(self.presented(authorization, cookie, query)[0])

    def set_cookie(self, token: str) -> str:
        """The ``Set-Cookie`` value that lets a browser's later requests (MJPEG, stats, WebRTC) carry the token."""
        return f"{self.cookie_name}={token}; Path=/; HttpOnly; SameSite=Strict"


UNAUTHORIZED = ("a token is required: open the URL with ?token=... that rtseg printed at start, or send"
                " 'Authorization: Bearer TOKEN' (the --token / RTSEG_TOKEN the server was given)")


@dataclass(frozen=True)
class Grant:
    """What :func:`resolve` decided: the server's :class:`Access`, the token to print (only when this process made
    it up or was given it) and the one line to tell the user."""

    access: Access
    token: str | None
    notice: str | None


def resolve(host: str, port: int, token: str | None = None, no_auth: bool = False,
            flag: str = "--serve") -> Grant:
    """The access policy for a server about to listen on ``host:port``.

    A token (``token`` or ``$RTSEG_TOKEN``) is honoured on any address; beyond the loopback one is generated when
    none is given, unless ``no_auth``.
    """
    if no_auth and token:
        raise RtsegError("--no-auth and --token contradict each other; pass one of them")
    if no_auth:
        if is_loopback(host):
            return Grant(Access(None, port), None, None)
        return Grant(Access(None, port), None,
                     f"WARNING: {flag} {host}:{port} with --no-auth: anyone who can reach this address may connect")
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    if token is not None:
        _check_token(token)
    if token is None and is_loopback(host):
        return Grant(Access(None, port), None, None)
    generated = token is None
    if generated:
        token = secrets.token_urlsafe(24)
    where = "a token was given" if is_loopback(host) else "bound beyond the loopback"
    notice = (f"{where}: requests need a token"
              + (" (generated for this run; pass --token or set RTSEG_TOKEN to choose one)" if generated else ""))
    return Grant(Access(digest(token), port), token, notice)


def _check_token(token: str) -> None:
    if len(token) < MIN_LENGTH or any(c.isspace() or not c.isprintable() or c in ";,\"\\" for c in token):
        raise RtsegError(f"--token / {TOKEN_ENV}: use at least {MIN_LENGTH} printable characters without spaces,"
                         f" quotes, commas, semicolons or backslashes (e.g. python3 -c 'import secrets;"
                         f" print(secrets.token_urlsafe(24))')")


def with_token(url: str, token: str | None) -> str:
    """``url`` with ``?token=TOKEN`` added (unchanged when ``token`` is None)."""
    if not token:
        return url
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode({"token": token})) if q)
    return urlunsplit(parts._replace(query=query))
