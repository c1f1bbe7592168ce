"""``asgi_redis`` (the Redis channel layer of Channels 1.x) for daphne.

daphne's channel-layer mode serves through any ASGI v1 layer, and
``asgi_redis`` is the one most Channels 1.x deployments used: daphne in one
process, workers in others, all talking through Redis. Its last release
predates asgiref 3 and msgpack 1.0, which daphne's own dependencies bring, so
it does not run here unmodified. This module makes it run:

* importing it provides ``asgiref.base_layer`` (see :mod:`daphne.layers.compat`)
  before ``asgi_redis`` is imported;
* :class:`RedisChannelLayer` decodes messages the way msgpack 1.x wants (the
  original passes ``encoding=``, which msgpack 1.x refuses, so every receive
  failed and its message was lost);
* its ``receive_twisted`` keeps one small txredisapi connection pool per Redis
  host for the life of the layer, where the original opened (and closed) a
  pool of ten connections on every call, i.e. for every reply daphne read.

Install the versions this was checked with, without their dependencies
(``asgi_redis`` declares ``asgiref~=1.1``, which would replace daphne's
asgiref 3, and redis-py 2.10; daphne's msgpack 1.x stays). redis-py 3
changed ``zadd`` in a way ``asgi_redis`` cannot call, so
:meth:`RedisChannelLayer.group_add` is rewritten here: the redis-py that
channels_redis needs serves both layers::

    pip install --no-deps asgi_redis==1.4.3 six==1.17.0 txredisapi==1.6.0
    pip install 'redis>=5,<9'

(``tests/requirements-asgi-redis.txt`` holds the same pins.) Then, in the
project's ASGI module::

    from daphne.layers.asgi_redis import RedisChannelLayer

    channel_layer = RedisChannelLayer(hosts=[("127.0.0.1", 6379)])

and serve it with ``daphne myproject.asgi:channel_layer``. Workers run in
processes of their own and import the same module (or build a layer with the
same ``hosts`` and ``prefix``), so that they receive ``http.request``,
``websocket.connect`` and the rest from the same Redis and answer on each
message's ``reply_channel``. Every option of ``asgi_redis.RedisChannelLayer``
is accepted; ``twisted_pool_size`` is this class's own.

daphne reads replies through ``receive_twisted`` (the layer has the
``twisted`` extension); ``daphne --force-sync`` polls with ``receive``
instead, which needs no txredisapi.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from twisted.internet import defer

from . import compat

# Importing this module asks for asgi_redis: provide what asgi_redis imports.
compat.install()

import asgi_redis  # noqa: E402
import msgpack  # noqa: E402

try:
    import txredisapi
except ImportError:  # no Twisted extension then (asgi_redis leaves it out too)
    txredisapi = None

__all__ = ["RedisChannelLayer"]

logger = logging.getLogger(__name__)

#: What the receives return: ``(channel, message)`` or ``(None, None)``.
Received = tuple[str | None, dict[str, Any] | None]


class RedisChannelLayer(asgi_redis.RedisChannelLayer):
    """``asgi_redis.RedisChannelLayer`` that works with msgpack 1.x and reads
    replies for daphne over long-lived Twisted connections.

    ``twisted_pool_size`` is how many connections each Redis host gets for
    ``receive_twisted``. Each waiting call holds one for up to
    ``blpop_timeout`` seconds, so it should be the number of calls kept
    waiting at once: daphne keeps one. The connections are opened on the
    first ``receive_twisted`` (in the reactor thread, where every later call
    must be made too), reopened if Redis goes away, and closed on
    :meth:`close_twisted` or with the reactor's other connections when it
    shuts down (after daphne's graceful shutdown, which still reads replies).
    """

    def __init__(
        self,
        expiry: int = 60,
        hosts: Sequence[str | tuple[str, int]] | None = None,
        prefix: str = "asgi:",
        group_expiry: int = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[Any, int] | None = None,
        symmetric_encryption_keys: Sequence[str | bytes] | None = None,
        stats_prefix: str = "asgi-meta:",
        connection_kwargs: Mapping[str, Any] | None = None,
        twisted_pool_size: int = 1,
    ) -> None:
        super().__init__(
            expiry=expiry,
            hosts=hosts,
            prefix=prefix,
            group_expiry=group_expiry,
            capacity=capacity,
            channel_capacity=channel_capacity,
            symmetric_encryption_keys=symmetric_encryption_keys,
            stats_prefix=stats_prefix,
            connection_kwargs=dict(connection_kwargs) if connection_kwargs else None,
        )
        if twisted_pool_size < 1:
            raise ValueError("twisted_pool_size must be at least 1")
        self.twisted_pool_size = twisted_pool_size
        #: host index -> txredisapi connection handler (see _twisted_pool)
        self._twisted_pools: dict[int, Any] = {}

    # -- redis-py 3 and later ----------------------------------------------------

    def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group`` for ``group_expiry`` seconds.

        The original passes ``zadd`` its members as keyword arguments, as
        redis-py 2 took them; redis-py 3 and later (which channels_redis
        needs, so one install can hold both layers) take a mapping."""
        self.valid_group_name(group)
        self.valid_channel_name(channel)
        key = self._group_key(group)
        connection = self.connection(self.consistent_hash(group))
        connection.zadd(key, {channel: time.time()})
        connection.expire(key, self.group_expiry)

    # -- serialisation ---------------------------------------------------------

    def deserialize(self, message: bytes) -> dict[str, Any]:
        """The message ``serialize`` made ``message`` from.

        ``raw=False`` is msgpack 1.x's spelling of the original's
        ``encoding="utf8"``: msgpack strings become ``str``, binaries stay
        ``bytes``. Map keys that are not strings are accepted, as msgpack
        accepted them when ``asgi_redis`` was written (its ``send`` lets them
        through, so refusing them here would lose the message)."""
        if self.crypter:
            message = self.crypter.decrypt(message, self.expiry + 10)
        return msgpack.unpackb(message, raw=False, strict_map_key=False)

    # -- the twisted extension ------------------------------------------------

    def receive_twisted(self, channels: Iterable[str]) -> defer.Deferred[Received]:
        """Like ``receive(channels, block=True)``, as a Deferred: it fires with
        ``(channel, message)``, or with ``(None, None)`` once ``blpop_timeout``
        seconds pass without a message. Call it in the reactor thread."""
        if txredisapi is None:
            raise NotImplementedError("receive_twisted needs txredisapi installed")
        return self._receive_twisted(channels)

    @defer.inlineCallbacks
    def _receive_twisted(self, channels: Iterable[str]) -> Any:
        # (The same walk over the hosts as the original, on lasting pools.)
        indexes = self._receive_list_names(channels)
        if indexes is None:
            return (None, None)
        while True:
            expired = False
            for index, list_names in indexes.items():
                random.shuffle(list_names)
                pool = self._twisted_pool(index)
                result = yield pool.blpop(list_names, timeout=self.blpop_timeout)
                if not result:
                    continue
                list_name, message_key = result
                content = yield pool.get(message_key)
                if content is None:
                    expired = True  # its key expired: look again
                    continue
                # (The synchronous receive deletes the key too; nobody waits
                # for it, and the key expires anyway if this fails.)
                pool.delete(message_key).addErrback(self._delete_failed)
                channel = list_name.decode("utf8")[len(self.prefix) :]
                message = self.deserialize(content)
                channel = message.pop("__asgi_channel__", channel)
                return (channel, message)
            if not expired:
                return (None, None)

    def _twisted_pool(self, index: int) -> Any:
        """The lasting connection pool to host ``index``, made on first use."""
        pool = self._twisted_pools.get(index)
        if pool is not None:
            return pool
        settings = self.connection(index).connection_pool.connection_kwargs
        options = {
            "dbid": settings.get("db"),
            "password": settings.get("password"),
            "poolsize": self.twisted_pool_size,
            "reconnect": True,
            # Bytes in, bytes out: a value that happens to be valid UTF-8 (or
            # look like a number) must still reach msgpack as it was stored.
            "charset": None,
            "convertNumbers": False,
        }
        if "path" in settings:  # a unix:// host
            pool = txredisapi.lazyUnixConnectionPool(path=settings["path"], **options)
        else:
            pool = txredisapi.lazyConnectionPool(
                host=settings["host"], port=settings["port"], **options
            )
        self._twisted_pools[index] = pool
        return pool

    def close_twisted(self) -> defer.Deferred[None]:
        """Close ``receive_twisted``'s connections (waiting calls fail with a
        connection error); the next call opens new ones. Fires when closed."""
        pools, self._twisted_pools = self._twisted_pools, {}
        closing = [pool.disconnect() for pool in pools.values()]
        return defer.gatherResults(closing, consumeErrors=True).addCallback(
            lambda _: None
        )

    @staticmethod
    def _delete_failed(failure: Any) -> None:
        logger.debug("Could not delete a received message's key: %s", failure.value)
