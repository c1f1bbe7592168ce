"""Trusted proxies (daphne/proxies.py), without sockets: the trust list, the
X-Forwarded-For and RFC 7239 Forwarded grammars, and which client a request
from a trusted peer names; then the same rules through a connection in memory
(tests/harness.py), for HTTP and WebSocket scopes.

The rules are checked with hypothesis against small reference models: a list
of networks for the trust list, a chain of proxies for the headers.
"""

from __future__ import annotations

import ipaddress
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.testing import StringTransportWithDisconnection

from daphne.config import Config, ConfigError
from daphne.proxies import (
    HTTP_SCHEMES,
    ProxyHeaders,
    ProxyTrust,
    forwarded_node,
    parse_forwarded,
    split_address,
)
from tests.harness import UPGRADE, connect

# -- strategies ------------------------------------------------------------------------

addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))


@st.composite
def networks(draw, v: int | None = None):
    address = draw(addresses if v is None else st.ip_addresses(v=v))
    prefix = draw(st.integers(0, address.max_prefixlen))
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False)


def entry_text(network) -> str:
    """A trust-list entry for ``network``: a bare address when it is one."""
    if network.num_addresses == 1:
        return str(network.network_address)
    return str(network)


def hosts_near(trust_networks):
    """Addresses inside, at the edges of, and outside the given networks."""
    inside = [
        st.sampled_from(
            [network.network_address, network.broadcast_address, network[-1]]
        )
        for network in trust_networks
    ]
    mapped = st.ip_addresses(v=4).map(lambda v4: ipaddress.ip_address(f"::ffff:{v4}"))
    return st.one_of(addresses, mapped, *inside)


# -- the trust list --------------------------------------------------------------------


@given(st.data(), st.lists(networks(), max_size=4))
def test_trust_matches_a_list_of_networks(data, trust_networks):
    trust = ProxyTrust([entry_text(network) for network in trust_networks])
    host = data.draw(hosts_near(trust_networks))
    # An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is listed either way.
    forms = [host, getattr(host, "ipv4_mapped", None)]
    expected = any(
        form in network
        for form in forms
        if form is not None
        for network in trust_networks
    )
    assert trust.trusts(str(host)) is expected
    # Spelled out in full, the answer is the same (the fast path is only a
    # shortcut for the usual spelling).
    if host.version == 6:
        assert trust.trusts(host.exploded) is expected


@given(st.lists(networks(v=4), max_size=4), st.ip_addresses(v=4))
def test_an_ipv4_peer_on_a_dual_stack_socket_is_its_ipv4_address(trust_networks, host):
    """With IPv4 entries only, ::ffff:a.b.c.d is trusted exactly when
    a.b.c.d is (a dual-stack socket shows IPv4 peers that way)."""
    trust = ProxyTrust([entry_text(network) for network in trust_networks])
    assert trust.trusts(f"::ffff:{host}") is trust.trusts(str(host))


@pytest.mark.parametrize(
    ("entry", "host", "trusted"),
    [
        ("::ffff:0:0/96", "::ffff:10.0.0.1", True),
        ("::/80", "::ffff:255.255.255.255", True),
        ("10.0.0.0/8", "::ffff:10.0.0.1", True),
        ("10.0.0.0/8", "::ffff:11.0.0.1", False),
        ("::ffff:10.0.0.1", "::ffff:10.0.0.1", True),
    ],
)
def test_ipv4_mapped_peers_match_in_either_family(entry, host, trusted):
    assert ProxyTrust(entry).trusts(host) is trusted


@given(addresses)
def test_star_trusts_everyone_and_unix_only_unix_sockets(host):
    assert ProxyTrust("*").trusts(str(host)) and ProxyTrust("*").trusts(None)
    unix = ProxyTrust("unix")
    assert unix.trusts(None) and not unix.trusts(str(host))
    assert not ProxyTrust("").trusts(None) and not ProxyTrust("").trusts(str(host))


def test_the_default_trusts_loopback_and_unix_sockets_only():
    trust = ProxyTrust(Config().forwarded_allow_ips)
    assert trust.trusts("127.0.0.1") and trust.trusts("::1") and trust.trusts(None)
    assert trust.trusts("::ffff:127.0.0.1")
    for other in ("127.0.0.2", "10.0.0.1", "192.0.2.1", "::2", "fe80::1"):
        assert not trust.trusts(other), other


def test_a_trust_list_is_a_comma_separated_string_or_a_sequence():
    text = ProxyTrust(" 10.0.0.0/8 , 2001:db8::/32,unix,")
    listed = ProxyTrust(["10.0.0.0/8", "2001:db8::/32", "unix"])
    for host in ("10.1.2.3", "2001:db8::5", None, "11.0.0.1", "2001:db9::1"):
        assert text.trusts(host) is listed.trusts(host)
    assert text.trusts("10.255.255.255") and not text.trusts("11.0.0.1")


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("localhost", "not an IP address"),
        ("10.0.0.1/8", "did you mean 10.0.0.0/8?"),
        ("10.0.0.0/33", "not an IP address"),
        ("fe80::1%eth0", "not an IP address"),
        ("1.2.3", "not an IP address"),
        ("**", "not an IP address"),
    ],
)
def test_bad_trust_entries_are_refused_in_one_line(entry, says):
    with pytest.raises(ValueError, match="^has ") as refused:
        ProxyTrust(["127.0.0.1", entry])
    assert repr(entry) in str(refused.value) and says in str(refused.value)
    with pytest.raises(ConfigError) as config_refused:
        Config(forwarded_allow_ips=f"127.0.0.1,{entry}")
    message = str(config_refused.value)
    assert message.startswith("forwarded_allow_ips has ") and "\n" not in message


def test_peers_that_are_not_addresses_are_not_trusted():
    trust = ProxyTrust("0.0.0.0/0")
    assert not trust.trusts("unknown") and not trust.trusts("")


# -- X-Forwarded-For entries ---------------------------------------------------------


def address_forms(address, port):
    """The ways an X-Forwarded-For entry may write ``address`` (and ``port``)."""
    text = str(address)
    if address.version == 4:
        return [text] if port is None else [f"{text}:{port}"]
    forms = [f"[{text}]" if port is None else f"[{text}]:{port}"]
    if port is None:
        forms += [text, address.exploded]
    return forms


@given(addresses, st.one_of(st.none(), st.integers(0, 65535)), st.data())
def test_x_forwarded_for_entries_split_into_host_and_port(address, port, data):
    entry = data.draw(st.sampled_from(address_forms(address, port)))
    host, found = split_address(entry)
    assert ipaddress.ip_address(host) == address and found == port


@given(st.text(max_size=30))
def test_x_forwarded_for_entries_are_addresses_or_nothing(entry):
    split = split_address(entry)
    if split is not None:
        host, port = split
        assert "%" not in host
        ipaddress.ip_address(host)
        assert port is None or 0 <= port <= 65535


@pytest.mark.parametrize(
    "entry",
    [
        "unknown",
        "[10.1.2.3]",
        "10.1.2.3:",
        "10.1.2.3:65536",
        "[::1]x",
        "::1]",
        "0x7f.1",
    ],
)
def test_x_forwarded_for_entries_that_are_not_addresses(entry):
    assert split_address(entry) is None


# -- the Forwarded grammar -------------------------------------------------------------

TOKEN = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
tokens = st.text(alphabet=TOKEN, min_size=1, max_size=10)
# Anything a header value may carry: quoted-string text, with its own quotes,
# backslashes, commas and semicolons.
values = st.text(
    alphabet=st.characters(
        min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"
    ),
    max_size=12,
)
spaces = st.sampled_from(["", " ", "\t", "  "])


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def forwarded_headers(draw):
    """``(header value, the elements it encodes)``, written in the ways RFC
    7239 allows: names in any case, tokens bare or quoted, spaces around the
    separators, empty elements and pairs."""
    elements = draw(
        st.lists(st.dictionaries(tokens.map(str.lower), values, max_size=4), max_size=4)
    )
    written = []
    for element in elements:
        pairs = []
        for name, value in element.items():
            name = draw(st.sampled_from([name, name.upper()]))
            bare = value and all(char in TOKEN for char in value)
            pairs.append(
                f"{name}={value if bare and draw(st.booleans()) else quote(value)}"
            )
        if draw(st.booleans()):
            pairs.append("")  # an empty pair
        written.append(";".join(draw(spaces) + pair + draw(spaces) for pair in pairs))
    if draw(st.booleans()):
        written.append("")  # an empty element
    return ",".join(written), [element for element in elements if element]


@given(forwarded_headers())
def test_forwarded_elements_read_back(header):
    value, elements = header
    assert parse_forwarded(value) == elements


@given(st.text(alphabet=TOKEN + ' =;,"\\ \t\x80', max_size=40))
def test_forwarded_parsing_never_raises(value):
    elements = parse_forwarded(value)
    if elements is not None:
        for element in elements:
            assert element and all(name and name == name.lower() for name in element)


@pytest.mark.parametrize(
    "value",
    [
        "for",
        "for=",
        "=x",
        'for="unterminated',
        "for=a for=b",
        "for=a;for=b",  # one parameter twice in one element
        "for = a",
        'for="a"b',
        "for=a\x80b",
        "for=[::1]",  # brackets are not a token: they need quotes
    ],
)
def test_malformed_forwarded_values(value):
    assert parse_forwarded(value) is None


def test_forwarded_examples_of_rfc_7239():
    value = (
        'for="_gazonk", For="[2001:db8:cafe::17]:4711", for=192.0.2.60;'
        "proto=http;by=203.0.113.43, for=192.0.2.43, for=unknown"
    )
    elements = parse_forwarded(value)
    assert elements == [
        {"for": "_gazonk"},
        {"for": "[2001:db8:cafe::17]:4711"},
        {"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"},
        {"for": "192.0.2.43"},
        {"for": "unknown"},
    ]
    nodes = [forwarded_node(element["for"]) for element in elements]
    assert nodes == [
        None,
        ("2001:db8:cafe::17", 4711),
        ("192.0.2.60", None),
        ("192.0.2.43", None),
        None,
    ]


@pytest.mark.parametrize(
    ("value", "node"),
    [
        ("192.0.2.43:47011", ("192.0.2.43", 47011)),
        ("192.0.2.43:_hidden", ("192.0.2.43", None)),
        ("[2001:db8::1]", ("2001:db8::1", None)),
        ("[2001:db8::1]:_p", ("2001:db8::1", None)),
        ("2001:db8::1", None),  # IPv6 must be in brackets
        ("[192.0.2.43]", None),
        ("unknown:80", None),
        ("_hidden", None),
        ("192.0.2.43:99999", None),
        ("192.0.2.43:_", None),
        ("", None),
        (None, None),
    ],
)
def test_forwarded_nodes(value, node):
    assert forwarded_node(value) == node


# -- which client a trusted peer names -----------------------------------------------

TRUSTED = ProxyTrust(["127.0.0.1", "10.0.0.0/8", "2001:db8::/32", "unix"])
RULES = ProxyHeaders(
    TRUSTED, "X-Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Proto"
)
PEER = ["10.0.0.1", 5000]

trusted_hosts = st.one_of(
    st.ip_addresses(network="10.0.0.0/8"), st.ip_addresses(network="2001:db8::/32")
).map(str)
untrusted_hosts = addresses.filter(
    lambda address: not TRUSTED.trusts(str(address))
).map(str)
# What a client may write in its own headers: addresses (trusted ones too),
# junk, and commas.
forged = st.lists(
    st.one_of(trusted_hosts, untrusted_hosts, st.text(max_size=10)), max_size=4
)


def xff(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def fwd(host: str) -> str:
    return f'"[{host}]"' if ":" in host else host


@given(forged, untrusted_hosts, st.lists(trusted_hosts, max_size=3), st.booleans())
def test_the_client_is_the_rightmost_untrusted_x_forwarded_for_entry(
    forgery, client, hops, lines
):
    """A client behind a chain of trusted proxies, each appending the address
    it got the request from: whatever the client wrote, it is named by the
    address the first proxy saw."""
    chain = [", ".join(forgery), xff(client), *map(xff, hops)]
    if lines:  # each proxy added a line of its own
        headers = [(b"x-forwarded-for", entry.encode()) for entry in chain]
    else:
        headers = [(b"x-forwarded-for", ", ".join(chain).encode())]
    found, scheme = RULES.apply(headers, PEER, "http")
    assert found == [client, PEER[1]] and scheme == "http"


@given(
    st.lists(st.one_of(forged.map(", ".join), st.text(max_size=10)), max_size=3),
    untrusted_hosts,
    st.lists(trusted_hosts, max_size=3),
    st.booleans(),
)
def test_the_client_is_the_rightmost_untrusted_forwarded_element(
    forgery, client, hops, well_formed
):
    """The same chain in Forwarded. What the client wrote may be malformed,
    and then no client is named (None), but an address the client chose is
    never taken."""
    if well_formed:
        forgery = [f"for={quote(text)};proto=https" for text in forgery]
    chain = [*forgery, f"for={fwd(client)}"]
    chain += [f"for={fwd(hop)};proto=http" for hop in hops]
    found, _ = RULES.apply([(b"forwarded", ", ".join(chain).encode())], PEER, "http")
    assert found in ([client, PEER[1]], None)
    if well_formed:
        assert found == [client, PEER[1]]


@given(st.lists(trusted_hosts, min_size=1, max_size=4))
def test_when_every_entry_is_trusted_the_leftmost_is_the_client(hops):
    headers = [(b"x-forwarded-for", ", ".join(map(xff, hops)).encode())]
    assert RULES.apply(headers, PEER, "http")[0] == [hops[0], PEER[1]]


def apply(*headers: tuple[bytes, bytes], client=PEER, scheme="http", rules=RULES):
    return rules.apply(list(headers), client, scheme)


def test_several_x_forwarded_for_lines_are_one_list():
    found = apply(
        (b"x-forwarded-for", b"192.0.2.9"),
        (b"x-forwarded-for", b"198.51.100.7, 10.0.0.3"),
    )
    assert found == (["198.51.100.7", 5000], "http")


def test_proto_and_port_go_with_the_chosen_entry():
    """When every proxy appended to each list, the proto and port at the
    client's position are taken; otherwise the nearest proxy's (rightmost)."""
    aligned = apply(
        (b"x-forwarded-for", b"192.0.2.1, 198.51.100.7, 10.0.0.3"),
        (b"x-forwarded-proto", b"http, https, http"),
        (b"x-forwarded-port", b"1, 4443, 2"),
    )
    assert aligned == (["198.51.100.7", 4443], "https")
    nearest = apply(
        (b"x-forwarded-for", b"192.0.2.1, 198.51.100.7"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-port", b"4443"),
    )
    assert nearest == (["198.51.100.7", 4443], "https")


@pytest.mark.parametrize(
    ("proto", "scheme"),
    [
        ("https", "https"),
        ("HTTPS", "https"),
        ("wss", "https"),
        ("ws", "http"),
        ("ftp", "http"),
        ("javascript", "http"),
        ("https://", "http"),
        ("", "http"),
    ],
)
def test_only_known_schemes_are_taken(proto, scheme):
    headers = [
        (b"x-forwarded-for", b"192.0.2.1"),
        (b"x-forwarded-proto", proto.encode()),
    ]
    assert RULES.apply(headers, PEER, "http")[1] == scheme
    forwarded = [(b"forwarded", f"for=192.0.2.1;proto={quote(proto)}".encode())]
    assert RULES.apply(forwarded, PEER, "http")[1] == scheme
    assert set(HTTP_SCHEMES.values()) == {"http", "https"}


@pytest.mark.parametrize(
    ("port", "taken"),
    [
        ("443", 443),
        ("1", 1),
        ("65535", 65535),
        ("0", 5000),
        ("65536", 5000),
        ("x", 5000),
    ],
)
def test_only_valid_ports_are_taken(port, taken):
    found = apply(
        (b"x-forwarded-for", b"192.0.2.1"), (b"x-forwarded-port", port.encode())
    )
    assert found[0] == ["192.0.2.1", taken]


def test_the_port_of_an_entry_counts_unless_a_port_header_says_otherwise():
    assert apply((b"x-forwarded-for", b"[2001:db9::1]:81"))[0] == ["2001:db9::1", 81]
    assert apply((b"x-forwarded-for", b"192.0.2.1:81"), (b"x-forwarded-port", b"82"))[
        0
    ] == ["192.0.2.1", 82]
    # A UNIX-socket peer has no port to fall back on.
    assert apply((b"x-forwarded-for", b"192.0.2.1"), client=None)[0] == ["192.0.2.1", 0]


def test_entries_that_name_no_client_give_none():
    for value in (b"unknown", b"not-an-ip", b"192.0.2.999", b"fe80::1%eth0"):
        assert apply((b"x-forwarded-for", value)) == (None, "http"), value
    for value in (b"for=unknown", b'for="_hidden"', b"proto=https", b'for="x'):
        assert apply((b"forwarded", value))[0] is None, value


def test_empty_headers_are_as_if_absent():
    assert apply((b"x-forwarded-for", b" , ")) == (PEER, "http")
    assert apply((b"forwarded", b" ,, ")) == (PEER, "http")
    assert apply((b"x-forwarded-proto", b"https")) == (PEER, "http")


def test_forwarded_gives_client_port_and_proto():
    found = apply(
        (
            b"forwarded",
            b'for=192.0.2.1;proto=http, for="[2001:db9::7]:4711";proto=https',
        ),
        (b"forwarded", b"for=10.0.0.9;proto=http;host=example.com"),
    )
    assert found == (["2001:db9::7", 4711], "https")


def test_x_forwarded_for_wins_over_forwarded():
    """A proxy that sets X-Forwarded-For passes a client's Forwarded on
    untouched, so when both are there, Forwarded is not read at all."""
    found = apply(
        (b"forwarded", b"for=203.0.113.7;proto=https"),
        (b"x-forwarded-for", b"198.51.100.7"),
    )
    assert found == (["198.51.100.7", 5000], "http")


def test_renamed_headers_are_the_ones_read():
    rules = ProxyHeaders(TRUSTED, "X-Real-IP")
    found = apply(
        (b"x-forwarded-for", b"203.0.113.7"),
        (b"x-real-ip", b"198.51.100.7"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-port", b"1"),
        rules=rules,
    )
    assert found == (["198.51.100.7", 5000], "http")


def test_peers_are_trusted_by_address_or_as_unix_sockets():
    assert RULES.trusts_peer(["10.9.9.9", 1]) and RULES.trusts_peer(None)
    assert not RULES.trusts_peer(["192.0.2.1", 1])
    assert not ProxyHeaders(ProxyTrust("127.0.0.1"), "X-Forwarded-For").trusts_peer(
        None
    )


# -- in memory, through a connection -------------------------------------------------

FORGED = (
    b"X-Forwarded-For: 203.0.113.7, 198.51.100.7\r\n"
    b"X-Forwarded-Proto: https\r\nX-Forwarded-Port: 8443\r\n"
)


def from_peer(address, **options):
    """A connection from ``address`` with --proxy-headers on."""
    transport = StringTransportWithDisconnection(peerAddress=address)
    options.setdefault("proxy_forwarded_address_header", "X-Forwarded-For")
    options.setdefault("proxy_forwarded_port_header", "X-Forwarded-Port")
    options.setdefault("proxy_forwarded_proto_header", "X-Forwarded-Proto")
    return connect(transport, **options)


def request_scope(conn) -> dict:
    conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n" + FORGED + b"\r\n")
    return conn.instance.scope


@pytest.mark.parametrize(
    "address",
    [
        IPv4Address("TCP", "127.0.0.1", 40000),
        IPv6Address("TCP", "::1", 40000),
        UNIXAddress(None),
    ],
    ids=["127.0.0.1", "::1", "unix"],
)
def test_a_trusted_peer_by_default_speaks_for_its_client(address):
    scope = request_scope(from_peer(address))
    assert scope["client"] == ["198.51.100.7", 8443] and scope["scheme"] == "https"


@pytest.mark.parametrize(
    ("address", "allow", "client"),
    [
        (
            IPv4Address("TCP", "192.0.2.5", 40000),
            Config.forwarded_allow_ips,
            ["192.0.2.5", 40000],
        ),
        (IPv4Address("TCP", "127.0.0.1", 40000), "10.0.0.0/8", ["127.0.0.1", 40000]),
        (UNIXAddress(None), "127.0.0.1", None),
    ],
    ids=["elsewhere", "loopback-not-listed", "unix-not-listed"],
)
def test_an_untrusted_peer_is_not_believed(address, allow, client):
    scope = request_scope(from_peer(address, forwarded_allow_ips=allow))
    assert scope["client"] == client and scope["scheme"] == "http"


def test_without_proxy_headers_even_a_trusted_peer_is_not_believed():
    conn = from_peer(
        IPv4Address("TCP", "127.0.0.1", 40000),
        proxy_forwarded_address_header=None,
        forwarded_allow_ips="*",
    )
    assert request_scope(conn)["client"] == ["127.0.0.1", 40000]


@pytest.mark.parametrize(
    ("address", "scheme", "client"),
    [
        (IPv4Address("TCP", "127.0.0.1", 40000), "wss", ["198.51.100.7", 8443]),
        (IPv4Address("TCP", "192.0.2.5", 40000), "ws", ["192.0.2.5", 40000]),
    ],
    ids=["trusted", "untrusted"],
)
def test_the_websocket_scope_follows_the_same_rules(address, scheme, client):
    conn = from_peer(address)
    conn.send(UPGRADE[:-2] + FORGED + b"\r\n")
    scope = conn.instance.scope
    assert scope["type"] == "websocket"
    assert scope["client"] == client and scope["scheme"] == scheme


def test_forwarded_through_a_connection():
    conn = from_peer(IPv4Address("TCP", "127.0.0.1", 40000))
    conn.send(
        b"GET / HTTP/1.1\r\nHost: a\r\n"
        b'Forwarded: for=203.0.113.7, for="[2001:db8::9]:1234";proto=https\r\n\r\n'
    )
    scope = conn.instance.scope
    assert scope["client"] == ["2001:db8::9", 1234] and scope["scheme"] == "https"


def test_config_keeps_the_trust_list_as_a_tuple_and_rebuilds_on_replace():
    config = Config(forwarded_allow_ips=" 10.0.0.0/8, unix ")
    assert config.forwarded_allow_ips == ("10.0.0.0/8", "unix")
    assert config.proxy is None  # proxy headers are off
    on = config.replace(proxy_forwarded_address_header="X-Forwarded-For")
    assert on.proxy.trusts_peer(["10.1.1.1", 1]) and on.proxy.trusts_peer(None)
    assert not on.proxy.trusts_peer(["127.0.0.1", 1])
    narrower = on.replace(forwarded_allow_ips="127.0.0.1")
    assert narrower.proxy.trusts_peer(["127.0.0.1", 1])
    assert not narrower.proxy.trusts_peer(None)
