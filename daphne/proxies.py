"""Which peers may speak for their clients, and what their proxy headers say.

``--forwarded-allow-ips`` is parsed once into a :class:`ProxyTrust`; with
``--proxy-headers``, :class:`ProxyHeaders` reads the client address, port and
scheme that a trusted peer reports, from ``X-Forwarded-For`` (with
``X-Forwarded-Port`` and ``X-Forwarded-Proto``) or, when a request has no
``X-Forwarded-For``, from the RFC 7239 ``Forwarded`` header.

Every proxy appends the address it received the request from on the right of
the list, and passes on whatever was there before, which the client may have
written. So the list is read from the right: the client is the rightmost
entry that is not itself a trusted proxy, and nothing a client wrote further
left is ever taken.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import TypeVar

__all__ = [
    "HTTP_SCHEMES",
    "ProxyHeaders",
    "ProxyTrust",
    "forwarded_node",
    "parse_forwarded",
    "parse_ip",
    "parse_port",
    "split_address",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``(host, port or None)``: a client address read from a proxy header.
Node = tuple[str, int | None]
_Entry = TypeVar("_Entry")

#: The schemes a proxy may report, as the ``http`` scope carries them (the
#: ``websocket`` scope turns them into ``ws`` and ``wss``).
HTTP_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}

_match_port = re.compile(r"[0-9]{1,5}").fullmatch


def parse_ip(text: str) -> IPAddress | None:
    """The IP address ``text`` spells, or None. Zones (``fe80::1%eth0``) are
    refused: they mean nothing to an application."""
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def parse_port(text: str) -> int | None:
    """A port number of one to five ASCII digits, 0-65535, or None."""
    if _match_port(text) is None:
        return None
    port = int(text)
    return port if port <= 65535 else None


def _split(entry: str) -> tuple[str, str | None, bool] | None:
    """``(host, port text or None, bracketed)`` of ``host``, ``host:port``,
    ``[host]`` or ``[host]:port``."""
    if entry[:1] == "[":
        host, sep, rest = entry[1:].partition("]")
        if not sep or rest[:1] not in ("", ":"):
            return None
        return host, (rest[1:] if rest else None), True
    if entry.count(":") == 1:
        host, port = entry.split(":")
        return host, port, False
    return entry, None, False


# Cached: a client's address comes back request after request.
@lru_cache(maxsize=1024)
def split_address(entry: str) -> Node | None:
    """An ``X-Forwarded-For`` entry as ``(host, port or None)``, or None.

    Accepts ``192.0.2.1``, ``192.0.2.1:80``, ``2001:db8::1``,
    ``[2001:db8::1]`` and ``[2001:db8::1]:80``.
    """
    parts = _split(entry)
    if parts is None:
        return None
    host, port_text, bracketed = parts
    address = parse_ip(host)
    if address is None or (bracketed and address.version != 6):
        return None
    if port_text is None:
        return host, None
    port = parse_port(port_text)
    return None if port is None else (host, port)


# -- RFC 7239 -------------------------------------------------------------------------

# RFC 9110 section 5.6: token and quoted-string; the values are header bytes
# read as latin-1, already free of control characters other than HTAB.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_match_pair = re.compile(rf"[ \t]*({_TOKEN})=({_TOKEN}|{_QUOTED})[ \t]*").match
_match_space = re.compile(r"[ \t]*").match
_unescape = re.compile(r"\\(.)").sub
# RFC 7239 section 6.3: obfuscated identifiers, for nodes and for ports.
_match_obfuscated = re.compile(r"_[A-Za-z0-9._\-]+").fullmatch


def parse_forwarded(value: str) -> list[dict[str, str]] | None:
    """The elements of a ``Forwarded`` value, each a dict of its parameters
    (lower-case names, unquoted values), or None if it is malformed.

    RFC 7239 section 4: ``1#forwarded-element``, each element
    ``[pair] *(";" [pair])`` with ``pair = token "=" (token / quoted-string)``
    and no parameter twice in one element. Empty elements are skipped (RFC
    9110 section 5.6.1); spaces are allowed around ``;`` as well as ``,``.
    """
    elements: list[dict[str, str]] = []
    element: dict[str, str] = {}
    position, end = 0, len(value)
    while True:
        pair = _match_pair(value, position)
        if pair is not None:
            name, raw = pair.group(1).lower(), pair.group(2)
            if name in element:
                return None
            element[name] = _unescape(r"\1", raw[1:-1]) if raw[0] == '"' else raw
            position = pair.end()
        else:
            position = _match_space(value, position).end()
        if position == end:
            break
        separator = value[position]
        position += 1
        if separator == ",":
            if element:
                elements.append(element)
            element = {}
        elif separator != ";":
            return None
    if element:
        elements.append(element)
    return elements


def forwarded_node(value: str | None) -> Node | None:
    """The address in a ``Forwarded`` ``for=`` value, or None for ``unknown``,
    an obfuscated identifier, or anything malformed (RFC 7239 section 6).

    IPv6 addresses are in brackets; an obfuscated port reads as no port.
    """
    if not value:
        return None
    parts = _split(value)
    if parts is None:
        return None
    host, port_text, bracketed = parts
    address = parse_ip(host)
    if address is None or address.version != (6 if bracketed else 4):
        return None
    if port_text is None or _match_obfuscated(port_text):
        return host, None
    port = parse_port(port_text)
    return None if port is None else (host, port)


# -- trust ----------------------------------------------------------------------------


def _network(entry: str) -> Network:
    if "%" not in entry:
        try:
            return ipaddress.ip_network(entry)
        except ValueError:
            pass
        try:
            loose = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            pass
        else:
            raise ValueError(
                f"has {entry!r}: host bits are set (did you mean {loose}?)"
            )
    raise ValueError(f"has {entry!r}: not an IP address, a network, '*' or 'unix'")


class ProxyTrust:
    """The peers whose proxy headers are believed: ``--forwarded-allow-ips``.

    Built from IP addresses and CIDR networks (IPv4 and IPv6), ``"unix"`` for
    peers on a UNIX socket and ``"*"`` for every peer; either a sequence or
    one comma-separated string. A bad entry raises ``ValueError``.
    """

    __slots__ = ("everyone", "unix", "networks", "addresses", "_matches")

    def __init__(self, entries: str | Iterable[str]) -> None:
        if isinstance(entries, str):
            entries = entries.split(",")
        self.everyone = False
        self.unix = False
        networks: list[Network] = []
        for raw in entries:
            entry = raw.strip()
            if entry == "*":
                self.everyone = True
            elif entry.lower() == "unix":
                self.unix = True
            elif entry:
                networks.append(_network(entry))
        self.networks = tuple(networks)
        #: Single addresses as text: a connection's peer is written the way
        #: ipaddress writes it, so a check is mostly one set lookup.
        self.addresses = frozenset(
            str(network.network_address)
            for network in networks
            if network.num_addresses == 1
        )
        # Anything else is parsed once per distinct host, not per request.
        self._matches = lru_cache(maxsize=1024)(self._match)

    def trusts(self, host: str | None) -> bool:
        """Whether ``host`` (an IP address; None for a UNIX socket) is trusted."""
        if self.everyone:
            return True
        if host is None:
            return self.unix
        return host in self.addresses or self._matches(host)

    def _match(self, host: str) -> bool:
        address = parse_ip(host.partition("%")[0])
        if address is None:
            return False
        if any(address in network for network in self.networks):
            return True
        # A dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d.
        mapped = getattr(address, "ipv4_mapped", None)
        return mapped is not None and any(
            mapped in network for network in self.networks
        )


# -- reading the headers --------------------------------------------------------------


def _items(values: list[bytes]) -> list[str]:
    """The non-empty members of a comma-separated list spread over lines."""
    items = (item.strip() for value in values for item in value.split(b","))
    return [item.decode("latin-1") for item in items if item]


def _aligned(items: list[str], index: int, count: int) -> str | None:
    """The member of a companion list (proto, port) that goes with entry
    ``index`` of ``count``: the same position when every proxy appended to
    both lists, else the rightmost, written by the nearest proxy."""
    if not items:
        return None
    return items[index] if len(items) == count else items[-1]


class ProxyHeaders:
    """The proxy header rules of a configuration: who is trusted, and which
    headers name the client, its port and the scheme."""

    __slots__ = ("trust", "address_header", "port_header", "proto_header")

    def __init__(
        self,
        trust: ProxyTrust,
        address_header: str,
        port_header: str | None = None,
        proto_header: str | None = None,
    ) -> None:
        self.trust = trust
        self.address_header = address_header.lower().encode("latin-1")
        self.port_header = (
            port_header.lower().encode("latin-1") if port_header else None
        )
        self.proto_header = (
            proto_header.lower().encode("latin-1") if proto_header else None
        )

    def trusts_peer(self, client: Sequence | None) -> bool:
        """Whether the connection's peer (``[host, port]``, or None for a
        UNIX socket) may speak for its clients."""
        return self.trust.trusts(None if client is None else client[0])

    def apply(
        self,
        headers: Iterable[tuple[bytes, bytes]],
        client: list | None,
        scheme: str,
    ) -> tuple[list | None, str]:
        """``(client, scheme)`` for a request from a trusted peer.

        ``headers`` are ``(lower-case name, value)`` pairs. ``X-Forwarded-For``
        (or the configured address header) wins over ``Forwarded`` when both
        are there: the proxies that set ``Forwarded`` mostly set it as well,
        and those that set only ``X-Forwarded-For`` pass a client's
        ``Forwarded`` on untouched. A client entry that is not an IP address
        (``unknown``, obfuscated, malformed) gives client None: unknown, and
        never the proxy's own address.
        """
        addresses: list[bytes] = []
        ports: list[bytes] = []
        protos: list[bytes] = []
        forwarded: list[bytes] = []
        address_header, port_header = self.address_header, self.port_header
        proto_header = self.proto_header
        for name, value in headers:
            if name == address_header:
                addresses.append(value)
            elif name == port_header:
                ports.append(value)
            elif name == proto_header:
                protos.append(value)
            elif name == b"forwarded":
                forwarded.append(value)
        peer_port = client[1] if client is not None else 0
        entries = _items(addresses)
        if entries:
            index, node = self._client(entries, split_address)
            proto = _aligned(_items(protos), index, len(entries))
            port_text = _aligned(_items(ports), index, len(entries))
            port = parse_port(port_text) if port_text is not None else None
            if port and node is not None:
                node = (node[0], port)
        elif forwarded:
            elements = parse_forwarded(
                ", ".join(value.decode("latin-1") for value in forwarded)
            )
            if not elements:
                # Malformed: no client can be named. Empty: as if absent.
                return (None if elements is None else client), scheme
            index, node = self._client(
                [element.get("for") for element in elements], forwarded_node
            )
            proto = elements[index].get("proto")
        else:
            return client, scheme
        if proto is not None:
            scheme = HTTP_SCHEMES.get(proto.lower(), scheme)
        if node is None:
            return None, scheme
        return [node[0], node[1] or peer_port], scheme

    def _client(
        self, entries: Sequence[_Entry], parse: Callable[[_Entry], Node | None]
    ) -> tuple[int, Node | None]:
        """The index and address of the rightmost entry that is not a
        trusted proxy; the leftmost if all of them are."""
        trusts = self.trust.trusts
        index = len(entries) - 1
        node = parse(entries[index])
        while node is not None and trusts(node[0]) and index > 0:
            index -= 1
            node = parse(entries[index])
        return index, node
