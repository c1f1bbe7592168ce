"""Listening endpoint descriptions for daphne.

Turns command-line binding options into Twisted endpoint description strings
and turns description strings into server endpoints. The ``fd:`` type (adopt
an already-listening socket by file descriptor) is handled here directly so it
works even when Twisted's plugin discovery cannot see daphne's plugin; the
plugin in ``daphne/twisted/plugins/fd_endpoint.py`` reuses the same code.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from twisted.internet.endpoints import AdoptedStreamServerEndpoint, serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint

__all__ = [
    "EndpointError",
    "build_endpoint_description_strings",
    "fd_endpoint",
    "server_endpoint",
]


class EndpointError(ValueError):
    """An endpoint description could not be turned into an endpoint."""


_DOMAINS = {
    "INET": socket.AF_INET,
    "INET6": socket.AF_INET6,
    "UNIX": socket.AF_UNIX,
}


def _quote(argument: str) -> str:
    # Twisted's description syntax treats ":" and "=" as separators and "\" as
    # the escape character, so all three must be escaped inside values.
    return argument.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def build_endpoint_description_strings(
    host: str | None = None,
    port: int | str | None = None,
    unix_socket: str | None = None,
    file_descriptor: int | str | None = None,
    backlog: int | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    ssl_ca_certs: str | None = None,
) -> list[str]:
    """Build Twisted server endpoint descriptions for the given bindings.

    Every binding that is given produces one description; TCP needs both
    ``host`` and ``port``. ``backlog`` is the listen backlog of the TCP and
    UNIX ones (an ``fd`` socket is already listening with its own). With
    ``ssl_certfile`` the TCP socket serves TLS (``ssl:``): its certificate,
    its key (``ssl_keyfile``, else in the certificate file) and the
    intermediate CA certificates sent with it (``ssl_ca_certs``).
    """
    listen = "" if backlog is None else f":backlog={int(backlog)}"
    if ssl_certfile is None and (ssl_keyfile or ssl_ca_certs):
        raise ValueError("--ssl-keyfile and --ssl-ca-certs need --ssl-certfile")
    descriptions = []
    if host is not None or port is not None:
        if host is None or port is None:
            raise ValueError("TCP binding requires both host and port")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if ssl_certfile is None:
            kind = "tcp"
        else:
            kind = "ssl"
            listen += f":privateKey={_quote(ssl_keyfile or ssl_certfile)}"
            listen += f":certKey={_quote(ssl_certfile)}"
            if ssl_ca_certs:
                listen += f":extraCertChain={_quote(ssl_ca_certs)}"
        descriptions.append(f"{kind}:port={int(port)}:interface={_quote(host)}{listen}")
    if unix_socket is not None:
        descriptions.append(f"unix:{_quote(unix_socket)}{listen}")
    if file_descriptor is not None:
        descriptions.append(f"fd:fileno={int(file_descriptor)}")
    return descriptions


def _split_description(body: str) -> tuple[list[str], dict[str, str]]:
    """Split the part after ``fd:`` into positional and keyword arguments."""
    args: list[str] = []
    kwargs: dict[str, str] = {}
    fields: list[list[str]] = [[""]]
    chars = iter(body)
    for char in chars:
        if char == "\\":
            fields[-1][-1] += next(chars, "")
        elif char == ":":
            fields.append([""])
        elif char == "=" and len(fields[-1]) == 1:
            fields[-1].append("")
        else:
            fields[-1][-1] += char
    for field in fields:
        if len(field) == 1:
            args.append(field[0])
        else:
            kwargs[field[0]] = field[1]
    return args, kwargs


def _parse_fileno(value: Any) -> int:
    text = str(value).strip()
    if not text.isascii() or not text.isdigit():
        raise EndpointError(f"fileno must be a non-negative integer, got {text!r}")
    return int(text)


def _parse_domain(value: Any) -> socket.AddressFamily:
    family = _DOMAINS.get(str(value).strip().upper())
    if family is None:
        raise EndpointError(f"domain must be INET, INET6 or UNIX, got {value!r}")
    return family


def _socket_family(fileno: int) -> socket.AddressFamily:
    try:
        sock = socket.socket(fileno=fileno)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise EndpointError(
            f"file descriptor {fileno} is not an open socket ({reason})"
        ) from None
    except (ValueError, OverflowError) as exc:
        raise EndpointError(f"file descriptor {fileno} is not usable ({exc})") from None
    try:
        family, kind = sock.family, sock.type
    finally:
        # Detach so the socket object does not close the caller's descriptor.
        sock.detach()
    if kind != socket.SOCK_STREAM:
        raise EndpointError(f"file descriptor {fileno} is not a stream socket")
    if family not in _DOMAINS.values():
        raise EndpointError(
            f"file descriptor {fileno} has unsupported address family "
            f"{getattr(family, 'name', family)}"
        )
    return family


def fd_endpoint(reactor: Any, *args: Any, **kwargs: Any) -> AdoptedStreamServerEndpoint:
    """Build an endpoint adopting a listening socket from parsed arguments.

    Accepts ``fileno`` either as the single positional argument or as a
    keyword, and an optional ``domain`` of ``INET``, ``INET6`` or ``UNIX``. The
    socket's address family is detected from the descriptor and, when a
    domain is given, must agree with it. Raises ``EndpointError``.
    """
    # An empty field (as in "fd:") carries no value; treat it as absent.
    args = tuple(arg for arg in args if arg != "")
    unknown = sorted(set(kwargs) - {"fileno", "domain"})
    if unknown:
        raise EndpointError(f"unknown fd endpoint argument(s): {', '.join(unknown)}")
    if len(args) > 1 or (args and "fileno" in kwargs):
        raise EndpointError("more than one file descriptor given")
    if args:
        fileno = _parse_fileno(args[0])
    elif "fileno" in kwargs:
        fileno = _parse_fileno(kwargs["fileno"])
    else:
        raise EndpointError("fileno is required for an fd endpoint")
    requested = _parse_domain(kwargs["domain"]) if "domain" in kwargs else None

    family = _socket_family(fileno)
    if requested is not None and requested != family:
        raise EndpointError(
            f"file descriptor {fileno} is an {family.name} socket, not {requested.name}"
        )
    return AdoptedStreamServerEndpoint(reactor, fileno, family)


def _raw_fields(description: str) -> list[str]:
    """``description`` split at its unescaped colons, escapes kept."""
    fields = [""]
    escaped = False
    for char in description:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields.append("")
            continue
        fields[-1] += char
    return fields


def _is_keyword(field: str) -> bool:
    """Whether a raw field is ``name=value`` (an unescaped ``=``)."""
    return "=" in field.replace("\\\\", "").replace("\\=", "")


def _escape_interface(description: str) -> tuple[str, str | None]:
    """Escape an IPv6 address written bare in ``interface=`` (Twisted reads
    its colons as separators); brackets around it are accepted too.

    Returns the description, and the interface value that was split at bare
    colons but is not an IPv6 address (for an error message), if any. The
    fields after ``interface=`` up to the next keyword field are its value:
    a positional field after a keyword one is never meant in practice, and
    an unescaped address could not have worked before."""
    fields = _raw_fields(description)
    for index, field in enumerate(fields):
        if not field.startswith("interface="):
            continue
        end = index + 1
        while end < len(fields) and not _is_keyword(fields[end]):
            end += 1
        if end == index + 1:
            return description, None  # one field: nothing was split
        value = ":".join(fields[index:end])[len("interface=") :]
        address = value[1:-1] if value[:1] == "[" and value[-1:] == "]" else value
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            return description, value
        fields[index:end] = [f"interface={_quote(address)}"]
        return ":".join(fields), None
    return description, None


def server_endpoint(reactor: Any, description: str) -> IStreamServerEndpoint:
    """Return a server endpoint for a Twisted endpoint description string.

    ``fd:`` descriptions are handled without plugin discovery; everything else
    goes through ``serverFromString``. Failures raise ``EndpointError`` with a
    one-line message.
    """
    prefix, _, body = description.partition(":")
    if prefix.strip().lower() == "fd":
        args, kwargs = _split_description(body)
        try:
            return fd_endpoint(reactor, *args, **kwargs)
        except EndpointError as exc:
            raise EndpointError(f"Invalid endpoint {description!r}: {exc}") from None
    escaped, split_value = _escape_interface(description)
    try:
        return serverFromString(reactor, escaped)
    except Exception as exc:  # noqa: BLE001
        # Twisted reports bad descriptions as ValueError, KeyError or
        # TypeError depending on which stage of parsing rejects them.
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if split_value is not None and (
            split_value.count(":") > 1 or split_value[:1] == "["
        ):
            # Meant as an IPv6 address, but not one.
            reason = (
                f"interface={split_value} is not an IPv6 address (an IPv6 "
                "interface is written interface=::1, interface=[::1] or "
                "interface=\\:\\:1)"
            )
        raise EndpointError(f"Invalid endpoint {description!r}: {reason}") from None
