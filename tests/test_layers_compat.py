"""daphne.layers.compat: asgiref 1.x's base layer for v1 layers of that era."""

from __future__ import annotations

import re
import sys

import pytest

from daphne.layers import ChannelFull, MessageTooLarge
from daphne.layers.compat import BaseChannelLayer, install


def test_install_provides_asgiref_base_layer():
    install()
    from asgiref.base_layer import BaseChannelLayer as provided

    assert provided is BaseChannelLayer
    assert install() is False  # (once is enough)
    assert sys.modules["asgiref.base_layer"].BaseChannelLayer is BaseChannelLayer


class Layer(BaseChannelLayer):
    extensions = ["groups"]


def test_capacities_from_globs_and_regexes():
    layer = Layer(
        capacity=7,
        channel_capacity={"http.*": 3, re.compile(r"websocket\.send!.*"): 2},
    )
    assert layer.get_capacity("http.request") == 3
    assert layer.get_capacity("websocket.send!abc") == 2
    assert layer.get_capacity("websocket.receive") == 7
    assert (layer.expiry, layer.group_expiry) == (60, 86400)


def test_name_checks_raise_type_error():
    layer = Layer()
    assert layer.valid_channel_name("daphne.response.abc!xyz")
    assert layer.valid_channel_name("daphne.response.abc!", receive=True)
    assert layer.valid_group_name("chat-room_1.a")
    assert layer.valid_channel_names(["a", "b!"], receive=True)
    for bad in ("", "a b", "x" * 100, b"bytes", "é"):
        with pytest.raises(TypeError):
            layer.valid_channel_name(bad)
    with pytest.raises(TypeError):
        layer.valid_channel_name("a!b", receive=True)
    with pytest.raises(TypeError):
        layer.valid_group_name("a!b")
    with pytest.raises(TypeError):
        layer.valid_channel_names([])
    assert layer.non_local_name("a.b!c") == "a.b!"
    assert layer.non_local_name("a.b") == "a.b"
    assert Layer.match_type_and_length("a") and not Layer.match_type_and_length(1)


def test_exceptions_are_daphnes():
    assert Layer.ChannelFull is ChannelFull
    assert Layer.MessageTooLarge is MessageTooLarge
    with pytest.raises(NotImplementedError):
        Layer().send("a", {})
