"""The token rule for servers bound beyond the loopback (rtseg.access), on its own; the servers' tests use it."""

import pytest

from rtseg.access import TOKEN_ENV, Access, digest, is_loopback, resolve, with_token
from rtseg.errors import RtsegError


@pytest.mark.parametrize("host,loop", [("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("[::1]", True),
                                       ("localhost", True), ("0.0.0.0", False), ("::", False),
                                       ("192.168.1.20", False), ("camera.lan", False), ("", False)])
def test_is_loopback(host, loop):
    assert is_loopback(host) is loop


def test_loopback_stays_open_and_beyond_it_a_token_is_generated(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    grant = resolve("127.0.0.1", 8080)
    assert not grant.access.required and grant.token is None and grant.notice is None
    a, b = resolve("0.0.0.0", 8080), resolve("0.0.0.0", 8080)
    assert a.access.required and len(a.token) >= 24 and a.token != b.token
    assert a.token not in a.notice and a.token not in repr(a.access)  # the digest only, never the token
    assert a.access.check(a.token) and not a.access.check(b.token) and not a.access.check(None)


def test_given_token_env_and_no_auth(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "from-the-env-123")
    grant = resolve("0.0.0.0", 9000)
    assert grant.token == "from-the-env-123" and grant.access.token_sha256 == digest("from-the-env-123")
    on_loopback = resolve("127.0.0.1", 9000)
    assert on_loopback.access.required and "beyond the loopback" not in on_loopback.notice  # honoured there too
    assert resolve("0.0.0.0", 9000, token="given-token-456").token == "given-token-456"
    opened = resolve("0.0.0.0", 9000, no_auth=True)
    assert not opened.access.required and "WARNING" in opened.notice and "--no-auth" in opened.notice
    with pytest.raises(RtsegError, match="contradict"):
        resolve("0.0.0.0", 9000, token="given-token-456", no_auth=True)
    for bad in ("short", "has space in it", 'quote"inside1'):
        with pytest.raises(RtsegError, match="printable"):
            resolve("0.0.0.0", 9000, token=bad)


def test_presented_header_query_cookie():
    access = Access(digest("s3cret-token"), 8080)
    assert access.allows(authorization="Bearer s3cret-token")
    assert access.allows(query="a=1&token=s3cret-token")
    assert access.allows(cookie="other=1; rtseg_token_8080=s3cret-token")
    assert not access.allows(cookie="rtseg_token_9090=s3cret-token")  # another port's server
    assert not access.allows(authorization="Bearer wrong-token", cookie="rtseg_token_8080=garbage")
    assert not access.allows(authorization="Basic s3cret-token")
    assert not access.allows(cookie="\x00bad")
    assert Access(None, 8080).allows()
    assert "HttpOnly" in access.set_cookie("s3cret-token") and "rtseg_token_8080=" in access.set_cookie("x")


def test_with_token():
    assert with_token("http://h:1/", None) == "http://h:1/"
    assert with_token("http://h:1/", "abc_DEF-123") == "http://h:1/?token=abc_DEF-123"
    assert with_token("http://h:1/x?a=1", "t0ken-value") == "http://h:1/x?a=1&token=t0ken-value"
