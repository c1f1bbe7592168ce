"""The request Transfer-Encoding rule (RFC 9112 section 6.1), in memory.

Plain ``chunked`` (any case, any surrounding space) is read; chunked not last,
or twice, is 400; chunked last after another coding is 501; both close.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.harness import connect, one_response

CODINGS = st.sampled_from(["chunked", "Chunked", "gzip", "identity", "x-custom"])


def post(coding: str):
    conn = connect()
    conn.send(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: %s\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n" % coding.encode()
    )
    return conn


@given(
    codings=st.lists(CODINGS, min_size=1, max_size=4),
    space=st.sampled_from(["", " ", "  "]),
)
def test_status_follows_the_final_coding(codings, space):
    conn = post(f"{space},{space}".join(codings))
    names = [coding.lower() for coding in codings]
    if names == ["chunked"]:
        assert conn.host.instances, "a plain chunked request reaches the app"
        assert conn.instance.body_received == b"hello"
        return
    expected = 400 if names[-1] != "chunked" or names.count("chunked") > 1 else 501
    assert one_response(conn.output()).status == expected
    assert not conn.host.instances
    assert not conn.open
