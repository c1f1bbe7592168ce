"""Tests for daphne.utils: import targets, header checks, X-Forwarded-* parsing."""

from __future__ import annotations

import ipaddress
import string
import sys
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.web.http_headers import Headers

from daphne import utils
from daphne.utils import (
    ImportTargetError,
    header_problem,
    import_by_path,
    is_valid_header_name,
    is_valid_header_value,
    is_valid_host,
    parse_x_forwarded_for,
)

# --------------------------------------------------------------------------
# import_by_path
# --------------------------------------------------------------------------


@pytest.fixture
def make_module(tmp_path, monkeypatch):
    """Write a uniquely named module to a temporary sys.path entry."""
    monkeypatch.syspath_prepend(str(tmp_path))
    created = []

    def make(source: str) -> str:
        name = f"daphne_test_mod_{uuid.uuid4().hex}"
        (tmp_path / f"{name}.py").write_text(source)
        created.append(name)
        return name

    yield make
    for name in created:
        sys.modules.pop(name, None)


def import_error(target: str) -> str:
    with pytest.raises(ImportTargetError) as info:
        import_by_path(target)
    message = str(info.value)
    assert "\n" not in message
    assert message
    assert isinstance(info.value, ValueError)
    return message


def test_import_by_path_module_attribute():
    import os.path

    assert import_by_path("os.path:join") is os.path.join


def test_import_by_path_dotted_attribute(make_module):
    name = make_module("class Outer:\n    class Inner:\n        value = 42\n")
    assert import_by_path(f"{name}:Outer.Inner.value") == 42


def test_import_by_path_strips_whitespace(make_module):
    name = make_module("app = object()\n")
    value = import_by_path(f" {name} : app ")
    assert value is sys.modules[name].app


@pytest.mark.parametrize(
    "target",
    ["os.path", "", ":", "os.path:", ":join", " : ", "a b:c", "os:a-b", ".rel:app"],
)
def test_import_by_path_malformed_targets(target):
    message = import_error(target)
    assert repr(target) in message


def test_import_by_path_missing_module():
    name = f"daphne_missing_{uuid.uuid4().hex}"
    assert import_error(f"{name}:app") == (
        f"Cannot import {name!r}: No module named {name!r}"
    )


def test_import_by_path_missing_submodule():
    message = import_error("daphne.no_such_module_here:app")
    assert message.startswith("Cannot import 'daphne.no_such_module_here': ")
    assert "No module named 'daphne.no_such_module_here'" in message


def test_import_by_path_module_with_broken_import(make_module):
    missing = f"daphne_missing_dep_{uuid.uuid4().hex}"
    name = make_module(f"import {missing}\napp = 1\n")
    message = import_error(f"{name}:app")
    assert message.startswith(f"Error while importing module {name!r}: ")
    assert f"No module named {missing!r}" in message
    assert not message.startswith("Cannot import")


def test_import_by_path_module_raising(make_module):
    name = make_module("raise RuntimeError('first line\\nsecond line')\n")
    message = import_error(f"{name}:app")
    assert message == (
        f"Error while importing module {name!r}: RuntimeError: first line second line"
    )


def test_import_by_path_module_with_syntax_error(make_module):
    name = make_module("def broken(:\n    pass\n")
    message = import_error(f"{name}:app")
    assert "SyntaxError" in message


def test_import_by_path_missing_attribute(make_module):
    name = make_module("app = 1\n")
    assert import_error(f"{name}:application") == (
        f"Module {name!r} has no attribute 'application'"
    )


def test_import_by_path_missing_nested_attribute(make_module):
    name = make_module("class App:\n    pass\n")
    assert import_error(f"{name}:App.handler.run") == (
        f"Module {name!r} has no attribute 'App.handler'"
    )


def test_import_by_path_attribute_lookup_raising(make_module):
    name = make_module(
        "def __getattr__(name):\n    raise RuntimeError('lazy\\nload failed')\n"
    )
    message = import_error(f"{name}:app")
    assert "RuntimeError: lazy load failed" in message


def test_import_by_path_hides_traceback_chain():
    with pytest.raises(ImportTargetError) as info:
        import_by_path(f"daphne_missing_{uuid.uuid4().hex}:app")
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


# --------------------------------------------------------------------------
# Header name and value validation
# --------------------------------------------------------------------------

TOKEN_BYTES = frozenset(
    (string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~").encode("ascii")
)
FORBIDDEN_VALUE_BYTES = frozenset([*range(0x09), *range(0x0A, 0x20), 0x7F, 0x85])
ALLOWED_VALUE_BYTES = sorted(set(range(256)) - FORBIDDEN_VALUE_BYTES)


def reference_is_token(value: bytes) -> bool:
    return len(value) > 0 and all(byte in TOKEN_BYTES for byte in value)


def reference_is_value(value: bytes) -> bool:
    return not any(byte in FORBIDDEN_VALUE_BYTES for byte in value)


def mostly(allowed, every):
    """Byte strings mostly drawn from ``allowed`` with the odd arbitrary byte."""
    byte = st.one_of(
        st.sampled_from(sorted(allowed)),
        st.sampled_from(sorted(allowed)),
        st.sampled_from(sorted(allowed)),
        st.sampled_from(every),
    )
    return st.lists(byte, max_size=40).map(bytes)


@given(st.one_of(st.binary(), mostly(TOKEN_BYTES, list(range(256)))))
def test_header_name_matches_reference(value):
    assert is_valid_header_name(value) == reference_is_token(value)


@given(st.one_of(st.binary(), mostly(ALLOWED_VALUE_BYTES, list(range(256)))))
def test_header_value_matches_reference(value):
    assert is_valid_header_value(value) == reference_is_value(value)


@given(st.lists(mostly(TOKEN_BYTES, list(range(256))), max_size=8))
def test_remembered_checks_answer_as_the_first_time(values):
    """The checks remember what passed: asked again (a repeated header), they
    give the same answer, and a failing string is never remembered."""
    for _ in range(2):
        for value in values:
            assert is_valid_header_name(value) == reference_is_token(value)
            assert is_valid_header_value(value) == reference_is_value(value)
    for memo, reference in (
        (utils._valid_names, reference_is_token),
        (utils._valid_values, reference_is_value),
    ):
        assert all(reference(value) for value in memo)


def test_the_memo_of_passed_checks_is_bounded(monkeypatch):
    monkeypatch.setattr(utils, "_valid_values", set())
    for number in range(utils.MEMO_SIZE * 3):
        assert is_valid_header_value(b"value-%d" % number)
        assert len(utils._valid_values) <= utils.MEMO_SIZE
    long_value = b"x" * (utils.MEMO_MAX_LENGTH + 1)
    assert is_valid_header_value(long_value)
    assert long_value not in utils._valid_values
    monkeypatch.setattr(utils, "_valid_hosts", set())
    assert not is_valid_host(b"bad host")
    assert is_valid_host(b"example.com")
    assert utils._valid_hosts == {b"example.com"}
    assert not is_valid_host(b"bad host")


@pytest.mark.parametrize(
    "value", [b"", b"text/html", b"a\tb", b"  padded  ", b"caf\xe9", b"\x80\xff"]
)
def test_header_value_allowed(value):
    assert is_valid_header_value(value)


@pytest.mark.parametrize(
    "value", [b"a\rb", b"a\nb", b"\x00", b"a\x7f", b"a\x85b", b"\x1b[31m"]
)
def test_header_value_forbidden(value):
    assert not is_valid_header_value(value)


def test_header_name_edge_cases():
    assert is_valid_header_name(b"X-Custom_Header.1~")
    assert not is_valid_header_name(b"")
    assert not is_valid_header_name(b"X Header")
    assert not is_valid_header_name(b"X:Header")
    assert not is_valid_header_name(b"Header\n")


# --------------------------------------------------------------------------
# Host validation
# --------------------------------------------------------------------------

REG_NAME_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;="
HEX = "0123456789abcdefABCDEF"

reg_names = st.lists(
    st.one_of(
        st.sampled_from(REG_NAME_CHARS),
        st.tuples(st.sampled_from(HEX), st.sampled_from(HEX)).map(
            lambda pair: "%" + "".join(pair)
        ),
    ),
    max_size=30,
).map("".join)
ipv4_hosts = st.ip_addresses(v=4).map(str)


def ipv6_forms(address: ipaddress.IPv6Address) -> st.SearchStrategy[str]:
    groups = address.exploded.split(":")
    embedded_v4 = (
        ":".join(groups[:6]) + ":" + str(ipaddress.IPv4Address(address.packed[12:]))
    )
    return st.sampled_from(
        [
            address.compressed,
            address.exploded,
            address.compressed.upper(),
            embedded_v4,
        ]
    )


ipv6_hosts = st.ip_addresses(v=6).flatmap(ipv6_forms).map(lambda text: f"[{text}]")
ports = st.one_of(
    st.just(""),
    st.just(":"),
    st.integers(0, 65535).map(lambda port: f":{port}"),
)
valid_hosts = st.tuples(st.one_of(reg_names, ipv4_hosts, ipv6_hosts), ports).map(
    lambda parts: (parts[0] + parts[1]).encode("ascii")
)
# Bytes that are not allowed anywhere in a Host header value.
HOST_POISON = sorted(
    set(b' @/?#\\"<>^`{|}[]') | set(range(0x20)) | {0x7F} | set(range(0x80, 0x100))
)


@given(valid_hosts)
def test_host_accepts_valid(value):
    assert is_valid_host(value), value


@given(valid_hosts, st.sampled_from(HOST_POISON), st.integers(min_value=0))
def test_host_rejects_injected_bytes(value, poison, position):
    position %= len(value) + 1
    poisoned = value[:position] + bytes([poison]) + value[position:]
    assert not is_valid_host(poisoned), poisoned


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"localhost",
        b"example.com:8000",
        b"example.com:",
        b"127.0.0.1:80",
        b"[::1]",
        b"[::1]:8000",
        b"[2001:db8::ffff:1.2.3.4]",
        b"xn--caf-dma.example",
        b"%41%42",
    ],
)
def test_host_valid_examples(value):
    assert is_valid_host(value)


@pytest.mark.parametrize(
    "value",
    [
        b"example.com:80:80",
        b"::1",
        b"2001:db8::1",
        b"[::1",
        b"::1]",
        b"[::1]x",
        b"[::1]:80:80",
        b"[1:2:3:4:5:6:7:8:9]",
        b"[fe80::1%25eth0]",
        b"[v1.future]",
        b"[example.com]",
        b"user@example.com",
        b"example.com/path",
        b"example.com?q",
        b"example.com#f",
        b"exa mple.com",
        b"example.com:8o",
        b"%4",
        b"%zz",
        b"example.com\r\nX-Injected: 1",
    ],
)
def test_host_invalid_examples(value):
    assert not is_valid_host(value)


# --------------------------------------------------------------------------
# parse_x_forwarded_for
# --------------------------------------------------------------------------


def as_dict(pairs):
    result = {}
    for name, value in pairs:
        result.setdefault(name.lower(), []).append(value)
    return result


def as_headers(pairs):
    headers = Headers()
    for name, value in pairs:
        headers.addRawHeader(name, value)
    return headers


def as_pairs(pairs):
    return list(pairs)


CONTAINERS = pytest.mark.parametrize(
    "container", [as_dict, as_pairs, as_headers], ids=["dict", "pairs", "Headers"]
)


@CONTAINERS
def test_forwarded_ipv4(container):
    headers = container([(b"X-Forwarded-For", b"10.1.2.3")])
    assert parse_x_forwarded_for(headers) == (["10.1.2.3", 0], None)


@CONTAINERS
def test_forwarded_ipv4_with_port(container):
    headers = container([(b"X-Forwarded-For", b"10.1.2.3:8080")])
    assert parse_x_forwarded_for(headers) == (["10.1.2.3", 8080], None)


@CONTAINERS
def test_forwarded_bare_ipv6(container):
    headers = container([(b"X-Forwarded-For", b"2001:db8::1")])
    assert parse_x_forwarded_for(headers, original_addr=["::1", 5000]) == (
        ["2001:db8::1", 5000],
        None,
    )


@CONTAINERS
def test_forwarded_bracketed_ipv6_with_port(container):
    headers = container([(b"X-Forwarded-For", b"[2001:db8::1]:4321")])
    assert parse_x_forwarded_for(headers) == (["2001:db8::1", 4321], None)


@CONTAINERS
def test_forwarded_bracketed_ipv6_without_port(container):
    headers = container([(b"X-Forwarded-For", b"[2001:db8::1]")])
    assert parse_x_forwarded_for(headers) == (["2001:db8::1", 0], None)


@CONTAINERS
def test_forwarded_port_and_proto_headers(container):
    headers = container(
        [
            (b"X-Forwarded-For", b"10.1.2.3:1111"),
            (b"X-Forwarded-Port", b"443"),
            (b"X-Forwarded-Proto", b" HTTPS "),
        ]
    )
    assert parse_x_forwarded_for(headers, original_scheme="http") == (
        ["10.1.2.3", 443],
        "https",
    )


@CONTAINERS
def test_forwarded_leftmost_entry_wins(container):
    headers = container(
        [
            (b"X-Forwarded-For", b" 10.0.0.1 , 10.0.0.2, 10.0.0.3"),
            (b"X-Forwarded-For", b"10.0.0.4"),
            (b"X-Forwarded-Port", b"81, 82"),
            (b"X-Forwarded-Proto", b"wss,http"),
        ]
    )
    assert parse_x_forwarded_for(headers) == (["10.0.0.1", 81], "wss")


@CONTAINERS
def test_forwarded_missing_headers_return_originals(container):
    headers = container([(b"Host", b"example.com")])
    original = ["192.0.2.1", 1234]
    result = parse_x_forwarded_for(
        headers, original_addr=original, original_scheme="http"
    )
    assert result == (original, "http")
    assert result[0] is original


@CONTAINERS
def test_forwarded_proto_ignored_without_address_header(container):
    headers = container([(b"X-Forwarded-Proto", b"https")])
    assert parse_x_forwarded_for(headers, original_scheme="http") == (None, "http")


@CONTAINERS
def test_forwarded_custom_header_names(container):
    headers = container(
        [
            (b"X-Real-IP", b"10.9.8.7"),
            (b"X-Real-Port", b"9999"),
            (b"X-Real-Scheme", b"https"),
        ]
    )
    result = parse_x_forwarded_for(
        headers,
        address_header_name="x-real-ip",
        port_header_name="X-REAL-PORT",
        proto_header_name="X-Real-Scheme",
    )
    assert result == (["10.9.8.7", 9999], "https")


@pytest.mark.parametrize(
    "names",
    [
        (b"X-Forwarded-For", b"X-Forwarded-Port", b"X-Forwarded-Proto"),
        (b"X-FORWARDED-FOR", b"x-Forwarded-port", b"x-forwarded-proto"),
        ("X-Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Proto"),
    ],
    ids=["title-case", "mixed-case", "str"],
)
def test_forwarded_mapping_keys_in_any_case(names):
    """Daphne 4 lower-cased the mapping's keys, so callers pass them as the
    headers were spelt."""
    address, port, proto = names
    headers = {address: [b"10.1.2.3"], port: [b"8443"], proto: [b"https"]}
    assert parse_x_forwarded_for(headers) == (["10.1.2.3", 8443], "https")


def test_forwarded_port_falls_back_to_original_port():
    headers = {b"x-forwarded-for": [b"10.1.2.3"]}
    assert parse_x_forwarded_for(headers, original_addr=("127.0.0.1", 5555)) == (
        ["10.1.2.3", 5555],
        None,
    )


def test_forwarded_port_header_beats_address_port():
    headers = {b"x-forwarded-for": [b"10.1.2.3:80"], b"x-forwarded-port": [b"8443"]}
    assert parse_x_forwarded_for(headers)[0] == ["10.1.2.3", 8443]


@pytest.mark.parametrize("port", [b"", b"-1", b"65536", b"http", b"8 0", b"\xb2"])
def test_forwarded_invalid_port_header_is_ignored(port):
    headers = {b"x-forwarded-for": [b"10.1.2.3:80"], b"x-forwarded-port": [port]}
    assert parse_x_forwarded_for(headers)[0] == ["10.1.2.3", 80]


@pytest.mark.parametrize(
    "address",
    [
        b"",
        b" , 10.0.0.1",
        b"unknown",
        b"example.com",
        b"10.1.2.3:99999",
        b"10.1.2.3:",
        b"[2001:db8::1",
        b"[10.1.2.3]:80",
        b"fe80::1%eth0",
        b"1.2.3.4.5",
        b"\xff\xfe",
    ],
)
def test_forwarded_invalid_address_returns_original(address):
    headers = {b"x-forwarded-for": [address]}
    original = ["192.0.2.1", 1234]
    assert parse_x_forwarded_for(headers, original_addr=original) == (original, None)


@pytest.mark.parametrize("proto", [b"", b"ht tp", b"1http", b"https://", b"\xe9"])
def test_forwarded_invalid_proto_keeps_original(proto):
    headers = {b"x-forwarded-for": [b"10.0.0.1"], b"x-forwarded-proto": [proto]}
    assert parse_x_forwarded_for(headers, original_scheme="http")[1] == "http"


def test_forwarded_disabled_address_header():
    headers = {b"x-forwarded-for": [b"10.0.0.1"]}
    assert parse_x_forwarded_for(headers, address_header_name=None) == (None, None)


def test_forwarded_pairs_consumed_once():
    pairs = iter(
        [
            (b"x-forwarded-proto", b"https"),
            (b"X-Forwarded-For", b"10.0.0.1"),
            (b"x-forwarded-port", b"444"),
        ]
    )
    assert parse_x_forwarded_for(pairs) == (["10.0.0.1", 444], "https")


HEADER_NAMES = [b"X-Forwarded-For", b"x-forwarded-port", b"X-FORWARDED-PROTO", b"Other"]
header_pairs = st.lists(
    st.tuples(st.one_of(st.sampled_from(HEADER_NAMES), st.binary()), st.binary()),
    max_size=8,
)


def check_result(result, original_addr, original_scheme):
    addr, scheme = result
    if addr is not original_addr:
        host, port = addr
        assert isinstance(host, str)
        ipaddress.ip_address(host)
        assert type(port) is int and 0 <= port <= 65535
    assert scheme is original_scheme or (isinstance(scheme, str) and scheme.islower())


@given(header_pairs)
def test_forwarded_arbitrary_pairs_never_raise(pairs):
    original_addr = ["192.0.2.1", 1]
    for headers in (pairs, as_dict(pairs)):
        result = parse_x_forwarded_for(
            headers, original_addr=original_addr, original_scheme="http"
        )
        check_result(result, original_addr, "http")


@given(st.lists(st.binary(), max_size=3), st.lists(st.binary(), max_size=3))
def test_forwarded_arbitrary_twisted_headers_never_raise(addresses, others):
    headers = Headers()
    for value in addresses:
        headers.addRawHeader(b"X-Forwarded-For", value)
    for value in others:
        headers.addRawHeader(b"X-Forwarded-Port", value)
        headers.addRawHeader(b"X-Forwarded-Proto", value)
    result = parse_x_forwarded_for(headers, original_scheme="ws")
    check_result(result, None, "ws")


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        (b"x-ok", b"fine value\t1", None),
        ("x-str", b"1", "must be bytes"),
        (b"x-str", "1", "must be bytes"),
        (b"bad name", b"1", "invalid header"),
        (b"x-split", b"a\r\nx-evil: 1", "invalid header"),
        (b"", b"1", "invalid header"),
    ],
)
def test_header_problem(name, value, problem):
    found = header_problem(name, value)
    if problem is None:
        assert found is None
    else:
        assert problem in found


@given(name=st.binary(max_size=12), value=st.binary(max_size=12))
def test_header_problem_agrees_with_the_byte_checks(name, value):
    valid = is_valid_header_name(name) and is_valid_header_value(value)
    assert (header_problem(name, value) is None) == valid
