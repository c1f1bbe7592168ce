"""Small helpers shared across daphne.

This module holds three unrelated groups of helpers:

* ``import_by_path`` resolves ``"module.path:object.path"`` strings (used by
  the command line to find the ASGI application) and turns every failure into
  an ``ImportTargetError`` with a one-line message; when the failure is in the
  user's own code, that exception is its ``__cause__``, and
  ``user_traceback`` shows where it was raised without daphne's frames.
* ``is_valid_header_name``, ``is_valid_header_value`` and ``is_valid_host``
  check raw header bytes on the request hot path (remembering, in bounded
  sets, the byte strings that passed).
* ``parse_x_forwarded_for`` is Daphne 4's reading of the ``X-Forwarded-*``
  headers, kept for code that calls it; the server itself decides whom to
  believe with :mod:`daphne.proxies`.
"""

from __future__ import annotations

import importlib
import os
import re
import traceback
from collections.abc import Iterable, Mapping
from typing import Any

from .proxies import parse_port, split_address

__all__ = [
    "ImportTargetError",
    "header_problem",
    "import_by_path",
    "is_valid_header_name",
    "is_valid_header_value",
    "is_valid_host",
    "parse_x_forwarded_for",
    "raised_in_user_code",
    "user_location",
    "user_traceback",
]


# --------------------------------------------------------------------------
# Importing the application
# --------------------------------------------------------------------------


class ImportTargetError(ValueError):
    """An import target string could not be resolved to an object.

    When the target was found but its own code failed (an exception while
    importing it, or in a module ``__getattr__``), ``__cause__`` is the
    exception that code raised."""


# Frames that are not the user's: daphne's own and the import machinery's.
_INTERNAL_PREFIXES = (
    os.path.dirname(os.path.abspath(__file__)) + os.sep,
    os.path.dirname(os.path.abspath(importlib.__file__)) + os.sep,
    "<frozen importlib.",
)


def _is_internal(filename: str) -> bool:
    return filename.startswith(_INTERNAL_PREFIXES)


def raised_in_user_code(exc: BaseException) -> bool:
    """Whether ``exc`` went through code that is neither daphne's nor the
    import machinery's (or is a syntax error in such a file)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return not _is_internal(exc.filename)
    return user_location(exc) is not None


def user_location(exc: BaseException) -> str | None:
    """``file:line`` of the innermost frame of the user's code in ``exc``'s
    traceback, or None when it went through none."""
    location = None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not _is_internal(filename):
            location = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return location


def user_traceback(exc: BaseException) -> str:
    """``exc`` formatted as Python prints it, chained exceptions included,
    with daphne's and the import machinery's frames left out."""
    formatted = traceback.TracebackException.from_exception(exc)
    pending, seen = [formatted], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.stack = traceback.StackSummary.from_list(
            [frame for frame in current.stack if not _is_internal(frame.filename)]
        )
        pending.extend(
            chained
            for chained in (current.__cause__, current.__context__)
            if chained is not None
        )
        pending.extend(getattr(current, "exceptions", None) or ())
    return "".join(formatted.format())


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _is_dotted_identifier(value: str) -> bool:
    return all(part.isidentifier() for part in value.split("."))


def import_by_path(path: str) -> object:
    """Import and return the object named by ``"module.path:object.path"``.

    The object path may be a dotted chain of attributes. Any failure raises
    ``ImportTargetError`` whose message is a single human-readable line.
    """
    module_path, sep, object_path = path.partition(":")
    if not sep:
        raise ImportTargetError(
            f"Invalid import target {path!r}: expected 'module.path:object.path'"
        )
    module_path = module_path.strip()
    object_path = object_path.strip()
    if not module_path or not object_path:
        raise ImportTargetError(
            f"Invalid import target {path!r}: "
            "both the module and the object path must be given"
        )
    if not _is_dotted_identifier(module_path):
        raise ImportTargetError(
            f"Invalid import target {path!r}: {module_path!r} is not a module path"
        )
    if not _is_dotted_identifier(object_path):
        raise ImportTargetError(
            f"Invalid import target {path!r}: {object_path!r} is not an attribute path"
        )

    try:
        target: Any = importlib.import_module(module_path)
    except ModuleNotFoundError as exc:
        # "Cannot import" only when the missing module is the target or one of
        # its parent packages, found missing by the import machinery itself;
        # a package missing for the user's own code is the user's error.
        missing = exc.name or ""
        if (
            module_path == missing or module_path.startswith(missing + ".")
        ) and not raised_in_user_code(exc):
            raise ImportTargetError(
                f"Cannot import {module_path!r}: {_one_line(exc)}"
            ) from None
        raise ImportTargetError(
            f"Error while importing module {module_path!r}: "
            f"{type(exc).__name__}: {_one_line(exc)}"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - any import failure becomes one line
        raise ImportTargetError(
            f"Error while importing module {module_path!r}: "
            f"{type(exc).__name__}: {_one_line(exc)}"
        ) from exc

    parts = object_path.split(".")
    for index, attribute in enumerate(parts):
        try:
            target = getattr(target, attribute)
        except AttributeError:
            raise ImportTargetError(
                f"Module {module_path!r} has no attribute "
                f"{'.'.join(parts[: index + 1])!r}"
            ) from None
        except Exception as exc:  # noqa: BLE001 - e.g. a module __getattr__ raising
            raise ImportTargetError(
                f"Error while looking up {'.'.join(parts[: index + 1])!r} "
                f"in module {module_path!r}: {type(exc).__name__}: {_one_line(exc)}"
            ) from exc
    return target


# --------------------------------------------------------------------------
# Header validation (hot path: one call per header per request)
# --------------------------------------------------------------------------

# RFC 9110 section 5.6.2 "token".
_match_token = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch

# Everything below 0x20 except HTAB, plus DEL and NEL. NEL (0x85) is a line
# break for str.splitlines() after a latin-1 decode, so a later consumer could
# split the value there.
_search_forbidden_value_byte = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f\x85]").search


# IPv4address and IPv6address from the RFC 3986 section 3.2.2 ABNF, as str
# patterns; the Host check compiles byte versions of the same text.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = rf"(?:{_OCTET}(?:\.{_OCTET}){{3}})"


def _ipv6_pattern() -> str:
    h16 = r"[0-9A-Fa-f]{1,4}"
    ls32 = rf"(?:{h16}:{h16}|{_IPV4})"

    def head(count: int) -> str:
        # An optional run of at most count + 1 groups before the "::".
        return rf"(?:(?:{h16}:){{0,{count}}}{h16})?"

    def tail(count: int) -> str:
        return rf"(?:{h16}:){{{count}}}"

    forms = [
        tail(6) + ls32,
        "::" + tail(5) + ls32,
        head(0) + "::" + tail(4) + ls32,
        head(1) + "::" + tail(3) + ls32,
        head(2) + "::" + tail(2) + ls32,
        head(3) + "::" + h16 + ":" + ls32,
        head(4) + "::" + ls32,
        head(5) + "::" + h16,
        head(6) + "::",
    ]
    return "(?:" + "|".join(forms) + ")"


_IPV6 = _ipv6_pattern()

# uri-host [ ":" port ]; a reg-name also covers IPv4 addresses. Each reg-name
# repetition consumes exactly one character or one escape so that matching
# stays linear.
_REG_NAME = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*"
_match_host = re.compile(
    rf"(?:\[{_IPV6}\]|{_REG_NAME})(?::[0-9]*)?".encode("ascii")
).fullmatch


# The same names, values and hosts come back on every request (and every
# response of an application), and looking one up in a set costs a tenth of
# a regular expression match: the checks remember byte strings that passed.
# Bounded: only short strings are kept, and a full memo is emptied.
MEMO_SIZE = 512
MEMO_MAX_LENGTH = 256
_valid_names: set[bytes] = set()
_valid_values: set[bytes] = set()
_valid_hosts: set[bytes] = set()


def _remember(memo: set[bytes], passed: bytes) -> None:
    if len(passed) <= MEMO_MAX_LENGTH:
        if len(memo) >= MEMO_SIZE:
            memo.clear()
        memo.add(passed)


def is_valid_header_name(name: bytes) -> bool:
    """Return whether ``name`` is a non-empty RFC 9110 token."""
    if name in _valid_names:
        return True
    if _match_token(name) is None:
        return False
    _remember(_valid_names, name)
    return True


def is_valid_header_value(value: bytes) -> bool:
    """Return whether ``value`` is free of control characters, DEL and NEL.

    HTAB, SP and other obs-text bytes are allowed; surrounding whitespace is
    left for the caller to strip.
    """
    if value in _valid_values:
        return True
    if _search_forbidden_value_byte(value) is not None:
        return False
    _remember(_valid_values, value)
    return True


def header_problem(name: Any, value: Any) -> str | None:
    """What is wrong with a header an application sends, or None.

    Names must be bytes and RFC 9110 tokens; values bytes with no control
    characters (so no header can split into two on the wire)."""
    if type(name) is not bytes or type(value) is not bytes:
        return "header names and values must be bytes"
    if name in _valid_names and value in _valid_values:
        return None  # (both passed before: no call to either check)
    if not is_valid_header_name(name) or not is_valid_header_value(value):
        return f"invalid header {name!r}: {value!r}"
    return None


def is_valid_host(value: bytes) -> bool:
    """Return whether ``value`` is a syntactically valid ``Host`` header value.

    Accepts ``uri-host [ ":" port ]`` where uri-host is a bracketed IPv6
    address, an IPv4 address or a (possibly empty) reg-name.
    """
    if value in _valid_hosts:
        return True
    if _match_host(value) is None:
        return False
    _remember(_valid_hosts, value)
    return True


# --------------------------------------------------------------------------
# X-Forwarded-* parsing
# --------------------------------------------------------------------------

_match_scheme = re.compile(r"[a-z][a-z0-9+\-.]*").fullmatch


def _header_key(name: str) -> bytes | None:
    try:
        return name.lower().encode("latin-1")
    except UnicodeEncodeError:
        return None


def _name_key(name: object) -> bytes | None:
    """A header name of a caller's container, lower-cased, as bytes."""
    if isinstance(name, str):
        return name.encode("latin-1", "replace").lower()
    if isinstance(name, (bytes, bytearray)):
        return bytes(name).lower()
    return None


def _first_value(values: object) -> bytes | None:
    if isinstance(values, (bytes, bytearray)):
        return bytes(values)
    if isinstance(values, (list, tuple)) and values:
        first = values[0]
        if isinstance(first, (bytes, bytearray)):
            return bytes(first)
        if isinstance(first, str):
            return first.encode("latin-1", "replace")
    return None


def _first_from_pairs(pairs: Iterable[Any], keys: list[bytes]) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            continue
        name = _name_key(pair[0])
        if name in keys and name not in found:
            first = _first_value((pair[1],))
            if first is not None:
                found[name] = first
    return found


def _first_from_mapping(
    headers: Mapping[Any, Any], keys: list[bytes]
) -> dict[bytes, bytes]:
    # Names in any case, as Daphne 4 lower-cased them (where two spellings
    # of one name are keys, the later one counts, as there).
    found: dict[bytes, bytes] = {}
    for name, values in headers.items():
        key = _name_key(name)
        if key in keys:
            first = _first_value(values)
            if first is not None:
                found[key] = first
    return found


def _collect_headers(headers: object, keys: list[bytes]) -> dict[bytes, bytes]:
    """Return the first value of each wanted header, keyed by lower-case name."""
    # Plain lists and dicts (what the HTTP protocol passes) are checked first
    # because ABC isinstance checks are comparatively slow.
    if isinstance(headers, (list, tuple)):
        return _first_from_pairs(headers, keys)
    if isinstance(headers, (dict, Mapping)):
        return _first_from_mapping(headers, keys)
    get_values = getattr(headers, "getRawHeaders", None)
    if not callable(get_values):
        if isinstance(headers, Iterable):
            return _first_from_pairs(headers, keys)
        return {}
    found: dict[bytes, bytes] = {}
    for key in keys:
        value = _first_value(get_values(key))
        if value is not None:
            found[key] = value
    return found


def _leftmost(value: bytes) -> str:
    return value.decode("latin-1").split(",", 1)[0].strip()


def _original_port(original_addr: object) -> int:
    if isinstance(original_addr, (list, tuple)) and len(original_addr) >= 2:
        port = original_addr[1]
        if isinstance(port, int) and not isinstance(port, bool):
            return port
    return 0


def parse_x_forwarded_for(
    headers: Any,
    address_header_name: str | None = "X-Forwarded-For",
    port_header_name: str | None = "X-Forwarded-Port",
    proto_header_name: str | None = "X-Forwarded-Proto",
    original_addr: Any = None,
    original_scheme: str | None = None,
) -> tuple[Any, str | None]:
    """Work out the client address and scheme reported by a reverse proxy.

    Daphne 4's function: it believes the headers whoever sent them and takes
    the leftmost ``X-Forwarded-For`` entry, so it is only safe behind a proxy
    that replaces the header. daphne's server reads proxy headers through
    :class:`daphne.proxies.ProxyHeaders` instead.

    ``headers`` may be a mapping of byte names (in any case) to lists of byte
    values, an iterable of ``(name, value)`` byte pairs, or a Twisted
    ``Headers`` object. Returns ``(addr, scheme)`` where ``addr`` is
    ``[host, port]`` or ``original_addr``, and ``scheme`` is the lower-cased
    forwarded scheme or ``original_scheme``. The port and scheme headers are
    only consulted when the address header is present, so they cannot be
    used on their own. Malformed input never raises; it falls back to the
    originals.
    """
    if not address_header_name:
        return original_addr, original_scheme
    address_key = _header_key(address_header_name)
    port_key = _header_key(port_header_name) if port_header_name else None
    proto_key = _header_key(proto_header_name) if proto_header_name else None
    if address_key is None:
        return original_addr, original_scheme
    keys = [key for key in (address_key, port_key, proto_key) if key is not None]

    found = _collect_headers(headers, keys)
    address_value = found.get(address_key)
    if address_value is None:
        return original_addr, original_scheme

    addr = original_addr
    entry = _leftmost(address_value)
    parsed = split_address(entry) if entry else None
    if parsed is not None:
        host, port = parsed
        port_value = found.get(port_key) if port_key is not None else None
        header_port = parse_port(_leftmost(port_value)) if port_value else None
        if header_port is not None:
            port = header_port
        elif port is None:
            port = _original_port(original_addr)
        addr = [host, port]

    scheme = original_scheme
    proto_value = found.get(proto_key) if proto_key is not None else None
    if proto_value:
        candidate = _leftmost(proto_value).lower()
        if _match_scheme(candidate) is not None:
            scheme = candidate
    return addr, scheme
