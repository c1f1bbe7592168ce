"""Errors that carry their answer: the status a refused request gets.

Protocol code raises these where it finds the problem; one place per
connection protocol turns them into bytes (an error page on HTTP/1.1).
"""

from __future__ import annotations


class HTTPError(Exception):
    """A request the server refuses; ``status`` is the answer for the client."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class RequestTimeout(HTTPError):
    status = 408


class PayloadTooLarge(HTTPError):
    status = 413


class HeadersTooLarge(HTTPError):
    status = 431
