"""The asgi_redis layer of the "Daphne 1.4.2 + v1 workers (asgi_redis)" row of
the channel-layer sections (started by :mod:`redis_cluster` with ``--daphne1``).

Runs in Daphne 1.4.2's virtualenv: ``asgi_redis`` 1.4.3 (the Redis layer of
Channels 1.x) on redis-py 2.10.6, as deployed then. Redis is at
127.0.0.1:``BENCH_REDIS_PORT``; each channel holds up to
``BENCH_LAYER_CAPACITY`` messages (default 100), as in :mod:`redis_layer`.

One change to the original: messages are decoded with ``raw=False``, not
``encoding="utf8"``. The virtualenv has msgpack 1.x, the C-accelerated
msgpack daphne's own row uses, which refuses ``encoding=``; the last
msgpack that took it builds only as its slow pure-Python fallback on this
Python, which would charge msgpack's speed to the server. Everything else
(sending, ``blpop`` receiving, capacity, reply channels) is asgi_redis's.
txredisapi is not installed, so Daphne 1.4.2 reads replies by polling
``receive`` from the reactor, as with ``pip install channels asgi_redis``.
"""

import os

import msgpack
from asgi_redis import RedisChannelLayer as OriginalRedisChannelLayer


class RedisChannelLayer(OriginalRedisChannelLayer):
    def deserialize(self, message):
        if self.crypter:
            message = self.crypter.decrypt(message, self.expiry + 10)
        return msgpack.unpackb(message, raw=False)


channel_layer = RedisChannelLayer(
    hosts=[("127.0.0.1", int(os.environ["BENCH_REDIS_PORT"]))],
    prefix="bench:",
    capacity=int(os.environ.get("BENCH_LAYER_CAPACITY", "100")),
)
