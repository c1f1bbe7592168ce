"""WebSocket: daphne's own opening handshake, a session per socket, and the
framing engine behind an adapter.

* :mod:`.handshake`: RFC 6455 checks on the parsed upgrade request, the
  ``websocket`` scope and the ``101`` answer;
* :mod:`.session`: one socket's state, timers and events, between the
  connection it runs on and its application instance;
* :mod:`.engine`: autobahn, which frames and unframes messages; every private
  autobahn hook lives in that one module.
"""
