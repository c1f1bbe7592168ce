"""Errors that carry their answer: the status a refused request gets.

Protocol code raises these where it finds the problem; one place per
connection protocol turns them into bytes (an error page on HTTP/1.1).
"""

from __future__ import annotations

from typing import Any


class HTTPError(Exception):
    """A request the server refuses; ``status`` is the answer for the client,
    ``headers`` any header pairs its error page must carry."""

    status = 400
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def __init__(
        self, message: str, status: int | None = None, headers: Any = ()
    ) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        if headers:
            self.headers = tuple(headers)


class RequestTimeout(HTTPError):
    status = 408


class PayloadTooLarge(HTTPError):
    status = 413


class HeadersTooLarge(HTTPError):
    status = 431
