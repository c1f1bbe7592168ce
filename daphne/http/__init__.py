"""What every HTTP version shares: one exchange per request or stream.

The connection protocols (:mod:`daphne.protocols`) parse the wire and hand
each request to an :class:`~daphne.http.exchange.HTTPExchange`; the exchange
builds nothing from the wire itself and writes nothing to it directly. The
modules here know neither a connection nor an application side:

* :mod:`.errors`: exceptions that carry the status the client gets;
* :mod:`.pages`: the small error pages and the ``Date`` header;
* :mod:`.headers`: the rules every request header passes;
* :mod:`.scope`: the ASGI ``http`` and ``websocket`` scopes;
* :mod:`.exchange`: the exchange and the writer interface it talks through.
"""
