"""The HTTP/2 request head rules (daphne.protocols.http2_stream), with
hypothesis over header lists: pseudo-headers, connection-specific fields,
the shared HTTP/1.1 rules, :authority and cookie crumbs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daphne.config import Config
from daphne.http.errors import HTTPError
from daphne.http.headers import RequestHead
from daphne.protocols.http2_stream import (
    CONNECTION_FIELDS,
    StreamError,
    read_request_head,
)

CONFIG = Config()
TOKEN = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12
)
VALUE = st.binary(max_size=20).map(
    lambda raw: bytes(byte for byte in raw if 0x20 <= byte < 0x7F).strip()
)
PSEUDO = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":path", b"/p?q=1"),
    (b":authority", b"example.com"),
]
REGULAR_NAMES = TOKEN.map(str.encode).filter(
    lambda name: (
        name not in CONNECTION_FIELDS
        and name
        not in (b"te", b"host", b"content-length", b"cookie", b"daphne-root-path")
    )
)


def read(fields):
    head = RequestHead(CONFIG)
    method, path = read_request_head(head, fields)
    return head, method, path


@given(st.lists(st.tuples(REGULAR_NAMES, VALUE), max_size=10))
def test_valid_heads_keep_their_fields_in_order(fields):
    head, method, path = read(PSEUDO + fields)
    assert (method, path) == ("GET", b"/p?q=1")
    assert head.headers == [*fields, (b"host", b"example.com")]


@given(st.lists(st.tuples(REGULAR_NAMES, VALUE), max_size=5), st.data())
def test_underscore_names_are_dropped(fields, data):
    name = data.draw(TOKEN).encode() + b"_x"
    head, _, _ = read(PSEUDO + [*fields, (name, b"1")])
    assert name not in [field for field, _ in head.headers]


@given(REGULAR_NAMES, st.integers(min_value=0, max_value=11))
def test_upper_case_names_are_stream_errors(name, position):
    position %= len(name)
    upper = (
        name[:position] + name[position : position + 1].upper() + name[position + 1 :]
    )
    if upper == name:
        return  # a digit or "-": no upper case to make
    with pytest.raises(StreamError):
        read([*PSEUDO, (upper, b"x")])


@pytest.mark.parametrize("name", sorted(CONNECTION_FIELDS))
def test_connection_specific_fields_are_stream_errors(name):
    with pytest.raises(StreamError):
        read([*PSEUDO, (name, b"x")])


@given(st.sampled_from(PSEUDO), st.lists(st.tuples(REGULAR_NAMES, VALUE), min_size=1))
def test_pseudo_after_regular_is_a_stream_error(pseudo, fields):
    others = [field for field in PSEUDO if field != pseudo]
    with pytest.raises(StreamError):
        read([*others, *fields, pseudo])


@pytest.mark.parametrize(
    "fields",
    [
        [(b":method", b"GET"), (b":path", b"/")],  # no :scheme
        [(b":scheme", b"http"), (b":path", b"/")],  # no :method
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"")],
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"x")],
        [*PSEUDO, (b":path", b"/again")],
        [*PSEUDO, (b":status", b"200")],
        [*PSEUDO, (b"te", b"gzip")],
        [*PSEUDO, (b"content-length", b"12a")],
    ],
)
def test_malformed_requests(fields):
    with pytest.raises(StreamError):
        read(fields)


def test_te_trailers_is_allowed_and_host_wins_over_authority():
    head, _, _ = read([*PSEUDO, (b"te", b"trailers"), (b"host", b"other.example")])
    assert (b"host", b"other.example") in head.headers
    assert (b"host", b"example.com") not in head.headers


@given(st.lists(VALUE.filter(lambda value: b";" not in value), min_size=2, max_size=5))
def test_cookie_crumbs_become_one_field(crumbs):
    head, _, _ = read(PSEUDO + [(b"cookie", crumb) for crumb in crumbs])
    assert (b"cookie", b"; ".join(crumbs)) in head.headers


def test_shared_rules_still_refuse():
    with pytest.raises(HTTPError) as caught:
        read([*PSEUDO, (b"x-bad", b"a\x00b")])
    assert caught.value.status == 400
    with pytest.raises(HTTPError) as caught:
        read([*PSEUDO, (b"x-big", b"a" * (CONFIG.max_request_head_size + 1))])
    assert caught.value.status == 431
    with pytest.raises(HTTPError) as caught:
        read([(b":method", b"CONNECT"), (b":authority", b"x:443")])
    assert caught.value.status == 501
