"""Which channels_redis releases daphne reads the storage of directly.

:mod:`daphne.layers.redis_direct` knows channels_redis 4.3's storage; any
other release must be served through the layer's own API, with a warning.
"""

from __future__ import annotations

import logging

import pytest

from daphne.layers import redis_direct


@pytest.mark.parametrize(
    "version, checked",
    [
        ("4.3.0", True),
        ("4.3.7", True),
        ("4.2.1", False),
        ("4.4.0", False),
        ("5.0", False),
        ("", False),
        ("dev", False),
    ],
)
def test_checked_release(version, checked):
    assert redis_direct.checked_release(version) is checked


def test_other_objects_are_not_channels_redis():
    assert redis_direct.is_channels_redis(object()) is False


def test_an_unchecked_release_falls_back_with_a_warning(monkeypatch, caplog):
    channels_redis = pytest.importorskip("channels_redis")
    from channels_redis.core import RedisChannelLayer

    layer = RedisChannelLayer(hosts=["redis://127.0.0.1:1"])
    assert redis_direct.is_channels_redis(layer) is True
    monkeypatch.setattr(channels_redis, "__version__", "4.9.0")
    with caplog.at_level(logging.WARNING, logger=redis_direct.__name__):
        assert redis_direct.is_channels_redis(layer) is False
    assert "4.9.0" in caplog.text
