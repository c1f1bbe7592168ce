"""HTTP/1.1 over real sockets: a daphne subprocess serving ``tests.apps``.

Normal requests go through httpx; anything about framing, smuggling, slow
clients or pipelining is written byte by byte on a raw socket so the test
controls exactly what the server sees.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.apps import SECRET
from tests.clients import Raw, Response, exchange
from tests.conftest import run_daphne

pytestmark = pytest.mark.timeout(60)

HTTP_DATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep"
    r"|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT"
)

# --------------------------------------------------------------------------
# Requests (the raw client is tests.clients.Raw)
# --------------------------------------------------------------------------


def request(
    method: str = "GET",
    target: str = "/scope",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    version: str = "1.1",
    host: str | None = "example.test",
) -> bytes:
    lines = [f"{method} {target} HTTP/{version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{name}: {value}" for name, value in headers or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def get_scope(port: int, target: str = "/scope", **kw) -> dict:
    response = exchange(port, request("GET", target, **kw))
    assert response.status == 200, response
    return response.json()


def assert_refused(port: int, data: bytes, statuses=(400,)) -> Response:
    """The server answers ``data`` with one of ``statuses`` and closes."""
    with Raw(port) as conn:
        conn.send(data)
        response = conn.read_response()
        assert response.status in statuses, response
        assert response.header("connection") == "close"
        assert conn.closed_within(2)
    return response


def assert_still_serving(port: int) -> None:
    scope = get_scope(port, "/scope?alive=1")
    assert scope["query_string"] == "alive=1"


# --------------------------------------------------------------------------
# Servers with non-default options (module-scoped: started once)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def root_server():
    with run_daphne("--root-path", "/prefix") as running:
        yield running


@pytest.fixture(scope="module")
def timeout_server():
    with run_daphne("--http-timeout", "1") as running:
        yield running


@pytest.fixture(scope="module")
def proxy_server():
    with run_daphne("--proxy-headers") as running:
        yield running


@pytest.fixture(scope="module")
def real_ip_server():
    with run_daphne("--proxy-headers", "--proxy-headers-host", "X-Real-IP") as running:
        yield running


@pytest.fixture(scope="module")
def limits_server():
    with run_daphne(
        "--request-head-timeout",
        "1",
        "--keep-alive-timeout",
        "1",
        "--max-request-body-size",
        "10",
    ) as running:
        yield running


# --------------------------------------------------------------------------
# The scope
# --------------------------------------------------------------------------


def test_scope_fields_of_a_plain_get(server):
    """type, asgi versions, http_version, method, scheme, client and server."""
    with Raw(server.port) as conn:
        conn.send(request("GET", "/scope"))
        scope = conn.read_response().json()
        client_port = conn.local_port
    assert scope["type"] == "http"
    assert scope["asgi"]["version"] == "3.0"
    assert isinstance(scope["asgi"]["spec_version"], str)
    assert scope["asgi"]["spec_version"].startswith("2.")
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope"
    assert scope["raw_path"] == "/scope"
    assert scope["query_string"] == ""
    assert scope["root_path"] == ""
    assert scope["client"] == ["127.0.0.1", client_port]
    assert scope["server"] == ["127.0.0.1", server.port]
    # The lifespan startup stored state that every request scope gets a copy of.
    assert scope["state"] == {"lifespan": "started"}


def test_scope_http_version_1_0(server):
    response = exchange(server.port, request("GET", "/scope", version="1.0", host=None))
    assert response.json()["http_version"] == "1.0"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_scope_method(server, method):
    data = request(method, "/scope", headers=[("Content-Length", "0")])
    assert exchange(server.port, data).json()["method"] == method


def test_scope_path_is_percent_decoded_and_raw_path_is_not(server):
    scope = get_scope(server.port, "/p%20ath/%C3%A9?q=%20a+b")
    assert scope["path"] == "/p ath/é"
    assert scope["raw_path"] == "/p%20ath/%C3%A9"
    assert scope["query_string"] == "q=%20a+b"


def test_scope_of_an_absolute_form_target(server):
    scope = get_scope(server.port, "http://example.test/p%20a/b?x=1")
    assert scope["path"] == "/p a/b"
    assert scope["raw_path"] == "/p%20a/b"
    assert scope["query_string"] == "x=1"


def test_scope_headers_lower_cased_in_order_without_underscores(server):
    headers = [
        ("X-Zeta", "1"),
        ("x-ALPHA", "Two Words"),
        ("X_Underscore", "dropped"),
        ("X-Zeta", "again"),
        ("Accept", "*/*"),
    ]
    scope = get_scope(server.port, headers=headers)
    assert scope["headers"] == [
        ["host", "example.test"],
        ["x-zeta", "1"],
        ["x-alpha", "Two Words"],
        ["x-zeta", "again"],
        ["accept", "*/*"],
    ]


def test_scope_header_values_have_no_surrounding_whitespace(server):
    scope = get_scope(server.port, headers=[("X-Padded", "  value \t ")])
    assert ["x-padded", "value"] in scope["headers"], scope["headers"]


def test_fragment_in_request_target_is_not_in_the_scope(server):
    response = exchange(server.port, request("GET", "/scope?a=1#frag"))
    if response.status != 400:
        scope = response.json()
        assert scope["query_string"] == "a=1"
        assert "#" not in scope["path"]


def test_root_path_from_the_command_line(root_server):
    assert get_scope(root_server.port)["root_path"] == "/prefix"


def test_root_path_header_overrides_and_is_removed(root_server):
    scope = get_scope(
        root_server.port, headers=[("Daphne-Root-Path", "/other%20root"), ("X-A", "1")]
    )
    assert scope["root_path"] == "/other root"
    names = [name for name, _ in scope["headers"]]
    assert names == ["host", "x-a"]


# --------------------------------------------------------------------------
# Property tests: whatever the client sends arrives unchanged
# --------------------------------------------------------------------------

text_segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12
)
QUERY_SAFE = "=&+/?:@!$'()*,;"


@settings(max_examples=80, deadline=None)
@given(
    segments=st.lists(text_segment, min_size=1, max_size=5),
    query_text=st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
)
def test_any_path_and_query_round_trip(server, segments, query_text):
    raw_path = "/scope/" + "/".join(quote(segment, safe="") for segment in segments)
    query_string = quote(query_text, safe=QUERY_SAFE)
    target = raw_path + ("?" + query_string if query_string else "")
    scope = get_scope(server.port, target)
    assert scope["path"] == "/scope/" + "/".join(segments)
    assert scope["raw_path"] == raw_path
    assert scope["query_string"] == query_string


TOKEN_CHARS = (
    "!#$%&'*+-.^`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
#: Headers with a framing or connection meaning; they are tested on their own.
SPECIAL = {
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "expect",
    "daphne-root-path",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
}
header_name = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=20).filter(
    lambda name: name.lower() not in SPECIAL
)
#: Visible ASCII, inner spaces and tabs, and obs-text (0x80-0xFF) except NEL,
#: which daphne refuses on purpose; surrounding whitespace is not part of a value.
header_value = st.text(
    alphabet=st.characters(
        min_codepoint=0x09, max_codepoint=0xFF, exclude_characters="\x7f\x85"
    ).filter(lambda char: char == "\t" or char >= " "),
    max_size=40,
).map(lambda value: value.strip(" \t"))
underscore_name = st.tuples(
    st.text(alphabet=TOKEN_CHARS, max_size=8), st.text(alphabet=TOKEN_CHARS, max_size=8)
).map(lambda parts: parts[0] + "_" + parts[1])


@settings(max_examples=80, deadline=None)
@given(
    headers=st.lists(st.tuples(header_name, header_value), max_size=15),
    hidden=st.lists(st.tuples(underscore_name, header_value), max_size=3),
    data=st.data(),
)
def test_any_valid_headers_arrive_lower_cased_and_in_order(
    server, headers, hidden, data
):
    sent = list(headers)
    for item in hidden:
        sent.insert(data.draw(st.integers(0, len(sent))), item)
    scope = get_scope(server.port, headers=sent)
    expected = [["host", "example.test"]]
    expected += [[name.lower(), value] for name, value in headers]
    assert scope["headers"] == expected


# --------------------------------------------------------------------------
# Request framing (RFC 9112): refuse anything ambiguous, then close
# --------------------------------------------------------------------------


def test_content_length_with_transfer_encoding_is_refused(server):
    data = request(
        "POST",
        "/echo",
        [("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
        b"5\r\nhello\r\n0\r\n\r\n",
    )
    assert_refused(server.port, data)


@pytest.mark.parametrize(
    "coding",
    [
        "gzip",
        "chunked, gzip",
        "identity",
        "chunkedx",
        "chunked;x=1",
        "chunked, chunked",
    ],
)
def test_transfer_encoding_not_ending_in_chunked_is_400(server, coding):
    """RFC 9112 section 6.1: chunked not the final coding (or twice): the
    body length cannot be known, so 400 and close."""
    data = request("POST", "/echo", [("Transfer-Encoding", coding)], b"0\r\n\r\n")
    assert_refused(server.port, data, statuses=(400,))


@pytest.mark.parametrize("coding", ["gzip, chunked", "identity,chunked"])
def test_transfer_coding_before_chunked_is_501(server, coding):
    """Framed by chunked, but with a coding daphne does not decode: 501
    (RFC 9112 section 6.1), and close."""
    data = request("POST", "/echo", [("Transfer-Encoding", coding)], b"0\r\n\r\n")
    response = assert_refused(server.port, data, statuses=(501,))
    assert "Unsupported transfer coding" in response.body.decode()


def test_duplicate_transfer_encoding_is_refused(server):
    headers = [("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")]
    assert_refused(server.port, request("POST", "/echo", headers, b"0\r\n\r\n"))


def test_transfer_encoding_on_http_1_0_is_refused(server):
    """An HTTP/1.0 hop may not understand chunked framing: refuse it."""
    body = b"5\r\nhello\r\n0\r\n\r\n"
    headers = [("Transfer-Encoding", "chunked")]
    data = request("POST", "/echo", headers, body, version="1.0", host=None)
    assert_refused(server.port, data)


def test_missing_host_on_http_1_1_is_refused(server):
    assert_refused(server.port, request("GET", "/scope", host=None))


def test_missing_host_on_http_1_0_is_fine(server):
    response = exchange(server.port, request("GET", "/scope", version="1.0", host=None))
    assert response.status == 200


def test_duplicate_host_is_refused(server):
    assert_refused(server.port, request("GET", "/scope", [("Host", "other.test")]))


@pytest.mark.parametrize("host", ["a b", "a/b", "a@b:80:90", "[::1", "exa mple.test"])
def test_malformed_host_is_refused(server, host):
    assert_refused(server.port, request("GET", "/scope", host=host))


@pytest.mark.parametrize("host", ["example.test:8080", "[::1]:80", "10.0.0.1", ""])
def test_well_formed_host_is_accepted(server, host):
    assert get_scope(server.port, host=host)["headers"][0] == ["host", host]


@pytest.mark.parametrize("value", ["abc", "-1", "+5", "1 1", "1,1", "0x5", ""])
def test_invalid_content_length_is_refused(server, value):
    data = request("POST", "/echo", [("Content-Length", value)], b"hello")
    assert_refused(server.port, data)


def test_conflicting_content_lengths_are_refused(server):
    headers = [("Content-Length", "1"), ("Content-Length", "5")]
    assert_refused(server.port, request("POST", "/echo", headers, b"hello"))


@pytest.mark.parametrize(
    "char",
    ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\x00", "\r", "\x7f", "\x01"],
    ids=repr,
)
def test_control_characters_in_header_values_are_refused(server, char):
    data = request("GET", "/scope", [("X-Evil", f"a{char}b")])
    assert_refused(server.port, data)


def test_obs_fold_is_refused(server):
    data = b"GET /scope HTTP/1.1\r\nHost: x\r\nX-A: a\r\n folded\r\n\r\n"
    assert_refused(server.port, data)


def test_space_before_colon_is_refused(server):
    data = b"GET /scope HTTP/1.1\r\nHost: x\r\nX-A : a\r\n\r\n"
    assert_refused(server.port, data)


def test_chunked_body_arrives_in_several_events(server):
    with Raw(server.port) as conn:
        conn.send(request("POST", "/echo", [("Transfer-Encoding", "chunked")]))
        for chunk in (b"hello", b" ", b"world"):
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            time.sleep(0.1)
        conn.send(b"0\r\n\r\n")
        response = conn.read_response()
    assert response.status == 200
    assert response.body == b"hello world"
    assert int(response.header("x-chunks")) >= 3


def test_large_body_is_streamed_not_buffered(server):
    """A 1 MiB body sent slowly reaches the app in many events, intact."""
    body = bytes(range(256)) * 4096
    with Raw(server.port) as conn:
        conn.send(request("POST", "/echo", [("Content-Length", str(len(body)))]))
        for offset in range(0, len(body), 64 * 1024):
            conn.send(body[offset : offset + 64 * 1024])
            time.sleep(0.01)
        response = conn.read_response()
    assert response.status == 200
    assert response.body == body
    assert int(response.header("x-chunks")) > 1


def test_expect_100_continue_when_the_app_reads_the_body(server):
    with Raw(server.port) as conn:
        headers = [("Content-Length", "5"), ("Expect", "100-continue")]
        conn.send(request("POST", "/read-body-then-respond", headers))
        interim = conn.read_response()
        assert interim.status == 100
        assert interim.raw == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.send(b"hello")
        response = conn.read_response()
    assert response.status == 200
    assert response.body == b"got hello"


def test_no_100_continue_when_the_app_does_not_read_the_body(server):
    with Raw(server.port) as conn:
        headers = [("Content-Length", "5"), ("Expect", "100-continue")]
        conn.send(request("POST", "/no-body-read", headers))
        response = conn.read_response()
        assert response.status == 200
        assert response.body == b"not read"


def test_no_100_continue_for_http_1_0(server):
    with Raw(server.port) as conn:
        headers = [("Content-Length", "5"), ("Expect", "100-continue")]
        conn.send(request("POST", "/read-body-then-respond", headers, version="1.0"))
        assert conn.closed_within(0.3) is False
        assert conn.buf == b""
        conn.send(b"hello")
        response = conn.read_response()
    assert response.status == 200
    assert response.body == b"got hello"


def test_early_response_announces_the_close(server):
    """RFC 9110 10.1.1: a server answering before reading the whole body
    should say whether it will close; daphne always closes here."""
    with Raw(server.port) as conn:
        conn.send(request("POST", "/no-body-read", [("Content-Length", "100000")]))
        conn.send(b"x" * 1000)
        response = conn.read_response()
        assert response.status == 200
        closed = conn.closed_within(1)
    assert closed
    assert response.header("connection") == "close"


# --------------------------------------------------------------------------
# Response framing
# --------------------------------------------------------------------------


def test_streamed_response_is_chunked_on_http_1_1(server):
    with Raw(server.port) as conn:
        conn.send(request("GET", "/stream?n=3&size=4"))
        response = conn.read_response()
        assert response.header("transfer-encoding") == "chunked"
        assert response.header("content-length") is None
        assert response.body == b"aaaabbbbcccc"
        assert response.complete
        # The connection stays usable after the last chunk.
        conn.send(request("GET", "/scope?after=1"))
        assert conn.read_response().json()["query_string"] == "after=1"


def test_streamed_response_is_close_delimited_on_http_1_0(server):
    with Raw(server.port) as conn:
        conn.send(request("GET", "/stream?n=3&size=4", version="1.0"))
        response = conn.read_response()
    assert response.header("transfer-encoding") is None
    assert response.header("content-length") is None
    assert response.header("connection") == "close"
    assert response.body == b"aaaabbbbcccc"


def test_one_part_response_gets_a_content_length(server):
    response = exchange(server.port, request("POST", "/echo", body=b"", headers=[]))
    assert response.header("content-length") == "0"
    response = exchange(
        server.port, request("POST", "/echo", [("Content-Length", "3")], b"abc")
    )
    assert response.header("content-length") == "3"
    assert response.header("transfer-encoding") is None
    assert response.body == b"abc"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (request("GET", "/scope"), 200),
        (request("GET", "/status/204"), 204),
        (request("GET", "/raise"), 500),
        (request("GET", "/scope", host=None), 400),
        (request("GET", "/stream"), 200),
    ],
    ids=["200", "204", "500", "400", "chunked"],
)
def test_every_response_has_date_and_server(server, data, status):
    response = exchange(server.port, data)
    assert response.status == status
    assert HTTP_DATE.fullmatch(response.header("date")), response.header("date")
    assert response.all("server") == ["daphne"]
    assert len(response.all("date")) == 1


def test_head_keeps_content_length_and_sends_no_body(server):
    with Raw(server.port) as conn:
        conn.send(request("HEAD", "/head-length"))
        response = conn.read_response("HEAD")
        assert response.status == 200
        assert response.header("content-length") == "1234"
        # Any body bytes would be read as the start of the next response.
        conn.send(request("HEAD", "/stream"))
        streamed = conn.read_response("HEAD")
        assert streamed.status == 200
        conn.send(request("GET", "/scope?after=head"))
        assert conn.read_response().json()["query_string"] == "after=head"


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses_send_no_body(server, status):
    with Raw(server.port) as conn:
        conn.send(request("GET", f"/status/{status}?body=1"))
        response = conn.read_response()
        assert response.status == status
        assert response.header("transfer-encoding") is None
        if status == 204:
            assert response.header("content-length") is None
        conn.send(request("GET", "/scope?after=1"))
        follow = conn.read_response()
        assert follow.status == 200, follow
        assert follow.json()["query_string"] == "after=1"


def test_keep_alive_serves_several_requests_on_one_connection(server):
    with Raw(server.port) as conn:
        ports = set()
        for index in range(5):
            conn.send(request("GET", f"/scope?i={index}"))
            response = conn.read_response()
            assert response.header("connection") is None
            scope = response.json()
            assert scope["query_string"] == f"i={index}"
            ports.add(scope["client"][1])
        assert ports == {conn.local_port}


@pytest.mark.parametrize("first", ["/scope?i=0", "/sleep?s=0.3&i=0"])
def test_pipelined_requests_are_answered_in_order(server, first):
    with Raw(server.port) as conn:
        conn.send(
            request("GET", first)
            + request("POST", "/echo?i=1", [("Content-Length", "3")], b"one")
            + request("GET", "/scope?i=2")
        )
        first_response = conn.read_response()
        second = conn.read_response()
        third = conn.read_response()
    assert first_response.status == 200
    if first.startswith("/scope"):
        assert first_response.json()["query_string"] == "i=0"
    else:
        assert first_response.body == b"slept"
    assert second.body == b"one"
    assert third.json()["query_string"] == "i=2"


def test_pipelined_bad_request_after_a_good_one(server):
    """The good request is answered in full; the bad one behind it gets a 400,
    or else the first response announces the close (the client may retry)."""
    with Raw(server.port) as conn:
        conn.send(request("GET", "/sleep?s=0.2") + request("GET", "/x", host=None))
        first = conn.read_response()
        assert first.status == 200
        assert first.body == b"slept"
        if first.header("connection") == "close":
            assert conn.closed_within(2)
        else:
            second = conn.read_response()
            assert second.status == 400
            assert conn.closed_within(2)


def test_pipelined_request_with_a_broken_body_after_a_good_one(server):
    """The POST queued behind a slow GET has a broken chunked body: the GET is
    answered in full, then a 400 and a close; no application waits for the
    rest of a body that cannot come (the client would hang)."""
    headers = [("Transfer-Encoding", "chunked")]
    broken = request("POST", "/echo", headers, b"3\r\nabc\r\nzz\r\n")
    with Raw(server.port, timeout=3) as conn:
        conn.send(request("GET", "/sleep?s=0.2") + broken)
        first = conn.read_response()
        assert first.status == 200
        assert first.body == b"slept"
        second = conn.read_response()
        assert second.status == 400
        assert second.header("connection") == "close"
        assert conn.closed_within(2)


def test_pipelined_requests_survive_a_slow_first_response(limits_server):
    """Requests 2 and 3 are complete on the wire; request 3 only arrives in
    two TCP segments. The 1 s head timeout must not fire while daphne is
    busy with a 1.5 s first response and not reading."""
    with Raw(limits_server.port) as conn:
        third = request("GET", "/scope?i=3")
        conn.send(
            request("GET", "/sleep?s=1.5") + request("GET", "/scope?i=2") + third[:30]
        )
        time.sleep(0.1)
        conn.send(third[30:])
        first = conn.read_response()
        assert first.body == b"slept"
        assert first.header("connection") is None, "server gave up the pipeline"
        assert conn.read_response().json()["query_string"] == "i=2"
        assert conn.read_response().json()["query_string"] == "i=3"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_upgrade_request_body_is_not_parsed_as_a_request(server, framing):
    """A front proxy sees one POST with a body; daphne must not see two
    requests. Either the body reaches the application or the request is
    refused."""
    inner = request("GET", "/scope?smuggled=1", [("Connection", "close")])
    if framing == "chunked":
        headers = [("Transfer-Encoding", "chunked")]
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(inner), inner)
    else:
        headers = [("Content-Length", str(len(inner)))]
        body = inner
    headers += [("Connection", "Upgrade"), ("Upgrade", "foo")]
    with Raw(server.port, timeout=2) as conn:
        conn.send(request("POST", "/echo", headers, body))
        first = conn.read_response()
        try:
            rest = conn.read_until_close()
        except TimeoutError:
            rest = conn.buf
    assert b"smuggled=1" not in rest, rest
    assert first.status == 400 or first.body == inner, first


def test_plain_upgrade_request_is_answered_as_http(server):
    """Without a body, an Upgrade daphne does not support is plain HTTP and
    a request pipelined behind it is still served."""
    headers = [("Connection", "Upgrade"), ("Upgrade", "h2c")]
    with Raw(server.port) as conn:
        conn.send(request("GET", "/scope?u=1", headers) + request("GET", "/scope?u=2"))
        assert conn.read_response().json()["query_string"] == "u=1"
        assert conn.read_response().json()["query_string"] == "u=2"


def test_http_1_0_without_keep_alive_closes(server):
    with Raw(server.port) as conn:
        conn.send(request("GET", "/scope", version="1.0", host=None))
        response = conn.read_response()
        assert response.status == 200
        assert response.header("connection") == "close"
        assert conn.closed_within(2)


def test_connection_close_request_closes(server):
    with Raw(server.port) as conn:
        conn.send(request("GET", "/scope", [("Connection", "close")]))
        response = conn.read_response()
        assert response.header("connection") == "close"
        assert conn.closed_within(2)


def test_http_1_0_keep_alive_is_acknowledged_or_closed(server):
    """An HTTP/1.0 client only reuses a connection whose response says
    'Connection: keep-alive'; otherwise it waits for the server to close."""
    with Raw(server.port) as conn:
        data = request("GET", "/scope", [("Connection", "keep-alive")], version="1.0")
        conn.send(data)
        response = conn.read_response()
        assert response.status == 200
        if response.header("connection") != "keep-alive":
            assert conn.closed_within(1), "no keep-alive announced, yet not closed"


def test_curl_round_trip(server, tmp_path):
    """A real client: curl sends a header and a body with Expect: 100-continue."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    payload = tmp_path / "payload"
    payload.write_bytes(b"curl body " * 100)
    result = subprocess.run(
        [
            curl,
            "-sS",
            "-v",
            "--max-time",
            "10",
            "-H",
            "Expect: 100-continue",
            "-H",
            "X-From: curl",
            "--data-binary",
            f"@{payload}",
            f"{server.url}/echo",
        ],
        capture_output=True,
        timeout=15,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == payload.read_bytes()
    assert b"HTTP/1.1 100 Continue" in result.stderr
    assert b"< HTTP/1.1 200 OK" in result.stderr
    assert b"< server: daphne" in result.stderr


def test_httpx_sees_the_same_scope(server):
    response = httpx.get(
        f"{server.url}/scope", params={"a": "b c"}, headers={"X-Test": "yes"}
    )
    assert response.status_code == 200
    scope = response.json()
    assert scope["query_string"] == "a=b+c"
    assert ["x-test", "yes"] in scope["headers"]


# --------------------------------------------------------------------------
# The application contract: bad applications never crash the server
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/raise",
        "/return-early",
        "/bad-status",
        "/bad-header",
        "/body-before-start",
        "/double-start",
        "/too-long",
    ],
)
def test_application_errors_become_500(server, path):
    with Raw(server.port) as conn:
        conn.send(request("GET", path))
        response = conn.read_response()
        assert response.status == 500
        assert response.header("connection") == "close"
        assert conn.closed_within(2)
    assert b"Traceback" not in response.body
    assert SECRET.encode() not in response.body
    assert b"Injected" not in response.raw
    assert_still_serving(server.port)


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("/raise-mid", b"partial"),
        ("/double-start-after-body", b"first"),
        ("/too-long-streamed", b"012"),
        ("/too-short", b"012"),
    ],
)
def test_application_errors_after_the_head_cut_the_response(server, path, sent):
    with Raw(server.port) as conn:
        conn.send(request("GET", path))
        response = conn.read_response()
        assert response.status == 200
        assert response.complete is False
        assert response.body == sent
        assert conn.eof
    assert SECRET.encode() not in response.body
    assert_still_serving(server.port)


def test_httpx_sees_an_incomplete_body_after_raise_mid(server):
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{server.url}/raise-mid")


def test_application_sees_the_disconnect(server, tmp_path):
    marker = tmp_path / "marker"
    with Raw(server.port) as conn:
        conn.send(request("GET", f"/wait-disconnect?file={quote(str(marker))}"))
        time.sleep(0.2)
        assert not marker.exists()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and not marker.exists():
        time.sleep(0.02)
    assert marker.read_text() == "disconnect"


# --------------------------------------------------------------------------
# --http-timeout
# --------------------------------------------------------------------------


def test_http_timeout_answers_503(timeout_server):
    started = time.monotonic()
    with Raw(timeout_server.port) as conn:
        conn.send(request("GET", "/sleep?s=5"))
        response = conn.read_response()
        elapsed = time.monotonic() - started
        assert response.status == 503
        assert conn.closed_within(2)
    assert 0.8 < elapsed < 2.5


# --------------------------------------------------------------------------
# Proxy headers
# --------------------------------------------------------------------------


def test_proxy_headers_set_client_and_scheme(proxy_server):
    """From 127.0.0.1 (trusted by default) the client is the rightmost entry
    that is not a trusted proxy: what a client wrote on the left is skipped."""
    headers = [
        ("X-Forwarded-For", "10.1.2.3, 10.0.0.1, 127.0.0.1"),
        ("X-Forwarded-Port", "8443"),
        ("X-Forwarded-Proto", "https"),
    ]
    scope = get_scope(proxy_server.port, headers=headers)
    assert scope["client"] == ["10.0.0.1", 8443]
    assert scope["scheme"] == "https"


def test_proxy_headers_ipv6_client_keeps_the_real_port(proxy_server):
    with Raw(proxy_server.port) as conn:
        conn.send(request("GET", "/scope", [("X-Forwarded-For", "2001:db8::1")]))
        scope = conn.read_response().json()
        assert scope["client"] == ["2001:db8::1", conn.local_port]
        assert scope["scheme"] == "http"


@pytest.mark.parametrize("value", ["not-an-ip", "10.0.0.999", "2001:db8::1%eth0"])
def test_proxy_headers_malformed_address_is_unknown(proxy_server, value):
    """A client entry that is not an address names no client: None, never the
    proxy's own (trusted) address."""
    with Raw(proxy_server.port) as conn:
        conn.send(request("GET", "/scope", [("X-Forwarded-For", value)]))
        assert conn.read_response().json()["client"] is None


@pytest.mark.parametrize("value", ["", " , "])
def test_proxy_headers_empty_address_is_ignored(proxy_server, value):
    with Raw(proxy_server.port) as conn:
        conn.send(request("GET", "/scope", [("X-Forwarded-For", value)]))
        assert conn.read_response().json()["client"] == ["127.0.0.1", conn.local_port]


def test_proxy_headers_ignored_without_the_option(server):
    headers = [
        ("X-Forwarded-For", "10.1.2.3"),
        ("X-Forwarded-Port", "8443"),
        ("X-Forwarded-Proto", "https"),
    ]
    with Raw(server.port) as conn:
        conn.send(request("GET", "/scope", headers))
        scope = conn.read_response().json()
        assert scope["client"] == ["127.0.0.1", conn.local_port]
        assert scope["scheme"] == "http"


def test_proxy_headers_host_option(real_ip_server):
    headers = [("X-Forwarded-For", "10.1.2.3"), ("X-Real-IP", "192.0.2.7")]
    with Raw(real_ip_server.port) as conn:
        conn.send(request("GET", "/scope", headers))
        scope = conn.read_response().json()
        assert scope["client"] == ["192.0.2.7", conn.local_port]


# --------------------------------------------------------------------------
# Access log (the `server` fixture logs to stdout)
# --------------------------------------------------------------------------

LOG_DATE = r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d\]"


def test_access_log_line(server):
    with Raw(server.port) as conn:
        conn.send(request("GET", "/scope?x=1"))
        response = conn.read_response()
        port = conn.local_port
    # (The path too: the module's server has seen earlier clients on this port.)
    line = server.wait_for_line(rf'^127\.0\.0\.1:{port} .*"GET /scope\?x=1"')
    assert re.fullmatch(
        rf'127\.0\.0\.1:\d+ - - {LOG_DATE} "GET /scope\?x=1" 200 \d+', line
    ), line
    assert line.endswith(f" {len(response.body)}")


def test_access_log_of_an_empty_response(server):
    with Raw(server.port) as conn:
        conn.send(request("GET", "/status/204"))
        conn.read_response()
        port = conn.local_port
    line = server.wait_for_line(rf'^127\.0\.0\.1:{port} .*"GET /status/204"')
    assert re.fullmatch(
        rf'127\.0\.0\.1:{port} - - {LOG_DATE} "GET /status/204" 204 -', line
    )


def test_access_log_of_an_application_error(server):
    with Raw(server.port) as conn:
        conn.send(request("GET", "/raise"))
        response = conn.read_response()
        port = conn.local_port
    line = server.wait_for_line(rf'^127\.0\.0\.1:{port} .*"GET /raise"')
    assert line.endswith(f'"GET /raise" 500 {len(response.body)}'), line


# --------------------------------------------------------------------------
# Slow and oversized clients
# --------------------------------------------------------------------------


def test_silent_connection_is_closed(limits_server):
    started = time.monotonic()
    with Raw(limits_server.port) as conn:
        assert conn.closed_within(3)
    assert 0.8 < time.monotonic() - started < 2


def test_idle_keep_alive_connection_is_closed(limits_server):
    with Raw(limits_server.port) as conn:
        conn.send(request("GET", "/scope"))
        assert conn.read_response().status == 200
        started = time.monotonic()
        assert conn.closed_within(3)
        assert 0.8 < time.monotonic() - started < 2


def test_request_body_over_the_limit_gets_413(limits_server):
    data = request("POST", "/echo", [("Content-Length", "11")], b"x" * 11)
    response = assert_refused(limits_server.port, data, statuses=(413,))
    assert b"413" in response.body


def test_chunked_request_body_over_the_limit_gets_413(limits_server):
    body = b"6\r\nxxxxxx\r\n6\r\nxxxxxx\r\n0\r\n\r\n"
    data = request("POST", "/echo", [("Transfer-Encoding", "chunked")], body)
    assert_refused(limits_server.port, data, statuses=(413,))


def test_declared_body_over_the_limit_gets_413_before_the_app(limits_server, tmp_path):
    """--max-request-body-size 10: a Content-Length of 1000 is refused from the
    head alone, before the body is sent (no 100 Continue invites it) and
    before any application starts."""
    marker = tmp_path / "marker"
    target = f"/wait-disconnect?file={quote(str(marker))}"
    headers = [("Content-Length", "1000"), ("Expect", "100-continue")]
    with Raw(limits_server.port) as conn:
        conn.send(request("POST", target, headers))
        response = conn.read_response()
        assert response.status == 413
        assert response.header("connection") == "close"
        assert conn.closed_within(2)
    time.sleep(0.2)  # an application that had started would see the disconnect
    assert not marker.exists()


def test_request_body_at_the_limit_is_accepted(limits_server):
    data = request("POST", "/echo", [("Content-Length", "10")], b"x" * 10)
    response = exchange(limits_server.port, data)
    assert response.status == 200
    assert response.body == b"x" * 10


def test_request_head_over_64_kib_gets_431(server):
    headers = [(f"X-Big-{index}", "v" * 1000) for index in range(70)]
    assert_refused(server.port, request("GET", "/scope", headers), statuses=(431,))
    assert_still_serving(server.port)


def test_request_line_over_64_kib_is_refused(server):
    data = request("GET", "/scope?" + "q" * (70 * 1024))
    assert_refused(server.port, data, statuses=(414, 431))


@pytest.mark.parametrize(("count", "status"), [(99, 200), (100, 431)])
def test_header_count_limit(server, count, status):
    """Host plus 99 headers is the most allowed (100 in all)."""
    headers = [(f"X-H{index}", "1") for index in range(count)]
    data = request("GET", "/scope", headers)
    if status == 200:
        assert len(exchange(server.port, data).json()["headers"]) == 100
    else:
        assert_refused(server.port, data, statuses=(status,))


# --------------------------------------------------------------------------
# ASGI 2
# --------------------------------------------------------------------------


def test_asgi2_application():
    with run_daphne(app="tests.apps:asgi2_application") as running:
        response = httpx.get(f"{running.url}/anything")
    assert response.status_code == 200
    assert response.text == "asgi2"


def test_concurrent_connections_are_independent(server):
    """Requests on parallel connections are all answered, each with its own scope."""
    results: dict[int, str] = {}

    def worker(index: int) -> None:
        results[index] = get_scope(server.port, f"/scope?w={index}")["query_string"]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == {index: f"w={index}" for index in range(20)}
