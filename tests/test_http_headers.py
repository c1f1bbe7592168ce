"""The version-neutral request rules: RequestHead (daphne/http/headers.py) and
scope building (daphne/http/scope.py), without a connection.

HTTP/1.1 feeds these from llhttp and HTTP/2 will feed them from HPACK; the
rules are checked here once, with hypothesis over names and values.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daphne.config import Config
from daphne.http.errors import HTTPError
from daphne.http.headers import COMMON_NAMES, RequestHead, share_common_names
from daphne.http.scope import build_scope, peer_proxy, split_target

TOKEN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-!#$%&'*+.^`|~"

names = st.text(alphabet=TOKEN, min_size=1, max_size=20).map(str.encode)
values = st.binary(max_size=40).filter(
    lambda v: all(b >= 0x20 and b != 0x7F and b != 0x85 or b == 0x09 for b in v)
)


def head(config: Config | None = None, **fields: bytes) -> RequestHead:
    result = RequestHead(config or Config())
    for name, value in fields.items():
        result.add(name.replace("_", "-").encode(), value)
    return result


@given(name=names, value=values)
def test_valid_fields_are_kept_lower_cased_and_right_stripped(name, value):
    fields = RequestHead(Config())
    fields.add(name, value)
    lower = name.lower()
    if lower == b"daphne-root-path":
        assert fields.headers == []
    elif lower in (b"host", b"content-length", b"transfer-encoding"):
        return  # rules of their own, below
    else:
        assert fields.headers == [(lower, value.rstrip(b" \t"))]


@given(
    fields=st.lists(
        st.tuples(st.one_of(names, st.sampled_from(sorted(COMMON_NAMES))), values)
    )
)
def test_common_names_are_swapped_for_shared_copies(fields):
    """A WebSocket's scope keeps its header list for as long as the socket is
    open: the common names become shared objects, nothing else changes."""
    headers = [(bytes(name.lower()), value) for name, value in fields]
    before = list(headers)
    share_common_names(headers)
    assert headers == before
    for name, _ in headers:
        if name in COMMON_NAMES:
            assert name is COMMON_NAMES[name]


@given(prefix=names, suffix=names, value=values)
def test_names_with_an_underscore_are_dropped(prefix, suffix, value):
    fields = RequestHead(Config())
    fields.add(prefix + b"_" + suffix, value)
    assert fields.headers == []


@given(
    value=st.binary(min_size=1, max_size=20),
    bad=st.sampled_from(b"\x00\r\n\x0b\x7f\x85"),
)
def test_values_with_control_characters_are_refused(value, bad):
    with pytest.raises(HTTPError) as refused:
        RequestHead(Config()).add(b"x-test", value + bytes([bad]))
    assert refused.value.status == 400


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ([(b"host", b"a"), (b"host", b"b")], 400),
        ([(b"host", b"bad host")], 400),
        ([(b"transfer-encoding", b"chunked"), (b"transfer-encoding", b"chunked")], 400),
        ([(b"content-length", b"11")], 413),
    ],
    ids=["two-hosts", "bad-host", "two-transfer-encodings", "body-too-large"],
)
def test_fields_the_server_must_read_are_checked(fields, status):
    request = RequestHead(Config(max_request_body_size=10))
    with pytest.raises(HTTPError) as refused:
        for name, value in fields:
            request.add(name, value)
    assert refused.value.status == status


def test_size_and_count_limits_answer_431():
    small = Config(max_request_head_size=100, max_request_headers=3)
    with pytest.raises(HTTPError) as refused:
        RequestHead(small).add(b"x-big", b"v" * 100)
    assert refused.value.status == 431
    many = RequestHead(small)
    for index in range(3):
        many.add(b"x-%d" % index, b"1")
    with pytest.raises(HTTPError) as refused:
        many.add(b"x-4", b"1")
    assert refused.value.status == 431


def test_what_the_server_notes():
    noted = head(
        host=b"example.com:8000",
        expect=b"100-Continue",
        upgrade=b"h2c, WebSocket",
        daphne_root_path=b"/sub%20dir",
        content_length=b"5",
    )
    assert noted.host_count == 1
    assert noted.expect_continue and noted.upgrade_websocket
    assert noted.root_path == "/sub dir"
    assert noted.content_length == 5
    assert (b"daphne-root-path", b"/sub%20dir") not in noted.headers


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        (b"/a/b?x=1", b"/a/b", b"x=1"),
        (b"/", b"/", b""),
        (b"http://example.com/p?q", b"/p", b"q"),
        (b"http://example.com", b"/", b""),
        (b"*", b"*", b""),
    ],
)
def test_request_targets_split_into_path_and_query(target, path, query):
    assert split_target(target) == (path, query)


@pytest.mark.parametrize("target", [b"/a#frag", b"http://[bad/"])
def test_malformed_targets_are_refused(target):
    with pytest.raises(HTTPError):
        split_target(target)


def scope_for(config: Config, **fields: bytes) -> dict:
    peer = ["10.0.0.1", 5000]
    return build_scope(
        config,
        head(config, **fields),
        "GET",
        b"/caf%C3%A9?q=1",
        "1.1",
        peer,
        ["10.0.0.2", 8000],
        "http",
        peer_proxy(config, peer),
    )


def test_scope_decodes_the_path_and_keeps_the_raw_one():
    scope = scope_for(Config(root_path="/root"), host=b"h")
    assert scope["path"] == "/café" and scope["raw_path"] == b"/caf%C3%A9"
    assert scope["query_string"] == b"q=1" and scope["root_path"] == "/root"
    assert scope["http_version"] == "1.1" and scope["headers"] == [(b"host", b"h")]


def test_proxy_headers_count_only_when_trusted():
    """Proxy headers count with --proxy-headers, and only from a peer on the
    trust list (the scope's peer here is 10.0.0.1, not on the default one)."""
    forwarded = {"x_forwarded_for": b"203.0.113.7", "x_forwarded_proto": b"https"}
    plain = scope_for(Config(), **forwarded)
    assert plain["client"] == ["10.0.0.1", 5000] and plain["scheme"] == "http"
    reading = Config(
        proxy_forwarded_address_header="X-Forwarded-For",
        proxy_forwarded_proto_header="X-Forwarded-Proto",
    )
    untrusted = scope_for(reading, **forwarded)
    assert untrusted["client"] == ["10.0.0.1", 5000]
    assert untrusted["scheme"] == "http"
    trusted = scope_for(reading.replace(forwarded_allow_ips="10.0.0.0/8"), **forwarded)
    assert trusted["client"][0] == "203.0.113.7" and trusted["scheme"] == "https"
