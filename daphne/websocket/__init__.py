"""WebSocket: daphne's own opening handshake, a session per socket, and the
framing engine behind an adapter.

* :mod:`.handshake`: RFC 6455 checks on the parsed upgrade request, the
  ``websocket`` scope and the ``101`` answer;
* :mod:`.session`: one socket's state, timers and events, between the
  connection it runs on and its application instance;
* :mod:`.engine`: the seam to the framing engine, which frames and unframes
  messages: :mod:`.engine_websockets` (websockets' sans-IO protocol, the
  default) or :mod:`.engine_autobahn`, each the one module that knows its
  library's private hooks; :mod:`.engines` picks one;
* :mod:`.deflate`: permessage-deflate negotiation, for either engine.
"""
