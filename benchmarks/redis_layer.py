"""The channels_redis layer of the "daphne + daphne-workers (channels_redis)"
row of the channel-layer sections (started by :mod:`redis_cluster`).

Redis is at 127.0.0.1:``BENCH_REDIS_PORT``; each channel holds up to
``BENCH_LAYER_CAPACITY`` messages (default 100), as in :mod:`layer_app`.
"""

import os

from channels_redis.core import RedisChannelLayer

channel_layer = RedisChannelLayer(
    hosts=[("127.0.0.1", int(os.environ["BENCH_REDIS_PORT"]))],
    prefix="bench:",
    capacity=int(os.environ.get("BENCH_LAYER_CAPACITY", "100")),
)
