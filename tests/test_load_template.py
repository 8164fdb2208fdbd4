"""Handshake extras: templates ({user} {n} {conn} {run} {env:} {file:}), header/query/subprotocol checks,
and that an error message never carries a value (it may be a secret)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsstorm.errors import UsageError
from wsstorm.load.connection import handshake_request
from wsstorm.load.template import compile_extras, compile_template, scrub


def test_fields_render_per_user_and_connection(tmp_path):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("tok-a\n\ntok-b\r\ntok-c\n")
    t = compile_template(
        "Bearer {file:" + str(tokens) + "} {user} {n}/{conn} {run} {env:X} {{x}}", "h", env={"X": "ex"}
    )
    assert t.render("local/2", 2, 5, "r1") == "Bearer tok-b local/2 2/5 r1 ex {x}"
    assert t.render("local/4", 4, 1, "r1").startswith("Bearer tok-a ")  # wraps round: 3 lines
    assert t.per_conn and not t.static
    assert compile_template("plain {run}", "h").static
    assert not compile_template("{user}", "h").per_conn


@pytest.mark.parametrize(
    "text", ["{nope}", "{", "a}b", "{env:}", "{env:UNSET_FOR_TEST}", "{file:/no/such}", "{user:x}", "{file:}"]
)
def test_bad_templates_are_usage_errors(text):
    with pytest.raises(UsageError):
        compile_template(text, "--header #1 (X)", env={})


@given(st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=40))
def test_text_without_braces_renders_as_itself(text):
    assert compile_template(text, "h").render("u", 1, 1, "r") == text


def test_extras_render_headers_and_query():
    ex = compile_extras(
        ["Authorization: Bearer {env:T}", "X-Conn: {conn}"],
        ["token={env:T}", "a b=c&d"],
        ["chat", "v2"],
        env={"T": "s3cret/1"},
    )
    r = ex.render("local/1", 1, 3, "run")
    assert r.headers == b"Authorization: Bearer s3cret/1\r\nX-Conn: 3\r\n"
    assert r.query == "token=s3cret%2F1&a%20b=c%26d"
    assert "s3cret/1" in r.secrets and "s3cret%2F1" in r.secrets and ex.per_conn
    assert ex.subprotocols == ("chat", "v2") and ex.names == ("Authorization", "X-Conn")
    req = handshake_request("ws://h:1/p?x=1", "h", 1, "k", query=r.query, protocols=ex.subprotocols, extra=r.headers)
    assert req.startswith(b"GET /p?x=1&token=s3cret%2F1&a%20b=c%26d HTTP/1.1\r\n")
    assert b"\r\nSec-WebSocket-Protocol: chat, v2\r\n" in req and req.endswith(b"X-Conn: 3\r\n\r\n")


def test_a_value_cannot_split_the_request(tmp_path):
    ex = compile_extras(["X: {env:T}"], [], [], env={"T": "a\r\nInjected: 1"})
    assert ex.render("u", 1, 1, "r").headers == b"X: aInjected: 1\r\n"


@pytest.mark.parametrize(
    "headers,query,protos",
    [
        (["NoColon"], [], []),
        (["Bad Name: x"], [], []),
        (["Host: x"], [], []),
        (["Sec-WebSocket-Protocol: x"], [], []),
        ([], ["novalue"], []),
        ([], ["=v"], []),
        ([], [], ["bad proto"]),
        ([], [], ["a", "a"]),
        (["X: {bogus}"], [], []),
    ],
)
def test_bad_extras_are_usage_errors(headers, query, protos):
    with pytest.raises(UsageError):
        compile_extras(headers, query, protos, env={})


def test_errors_never_show_the_value():
    for bad in (["Authorization: Bearer sup3rs3cret {bogus}"], ["Authorization: sup3rs3cret {"]):
        with pytest.raises(UsageError) as info:
            compile_extras(bad, [], [], env={})
        assert "sup3rs3cret" not in str(info.value)
    with pytest.raises(UsageError) as info:
        compile_extras([], ["k=sup3rs3cret{x}"], [], env={})
    assert "sup3rs3cret" not in str(info.value)


def test_scrub():
    assert scrub("got Bearer abcd1234 back", ("abcd1234",)) == "got Bearer <redacted> back"
