"""Live-server tests of the test project, run by Django's test runner.

tests/test_live_server.py runs this module with ``python -m django test``
(settings: project_settings): a real ``ChannelsLiveServerTestCase``, whose
server is daphne's ``DaphneProcess``, answering HTTP, static files, views
reading the test database, and WebSocket consumers talking through a group.
"""

import json
import urllib.request

from channels.testing import ChannelsLiveServerTestCase
from django.contrib.auth.models import User
from websockets.sync.client import connect


class LiveServerTests(ChannelsLiveServerTestCase):
    def get(self, path: str) -> tuple[int, dict, bytes]:
        with urllib.request.urlopen(self.live_server_url + path, timeout=10) as r:
            return r.status, dict(r.headers), r.read()

    def test_http_view_is_served_by_daphne(self):
        status, headers, body = self.get("/hello/?q=live")
        self.assertEqual(status, 200)
        self.assertEqual(headers["server"], "daphne")
        self.assertEqual(json.loads(body)["query"], "live")

    def test_static_files_are_served(self):
        status, _, body = self.get("/static/daphne-test.txt")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"static file of the daphne test project\n")

    def test_views_read_the_test_database(self):
        User.objects.create(username="made-by-the-test")
        _, _, body = self.get("/users/")
        self.assertEqual(json.loads(body), {"users": ["made-by-the-test"]})

    def test_websocket_consumers_talk_through_a_group(self):
        url = self.live_server_ws_url + "/ws/chat/lobby/"
        with (
            connect(url, open_timeout=10) as first,
            connect(url, open_timeout=10) as second,
        ):
            # Both have joined once each has been greeted.
            self.assertEqual(first.recv(timeout=10), "joined lobby")
            self.assertEqual(second.recv(timeout=10), "joined lobby")
            first.send("hello room")
            self.assertEqual(first.recv(timeout=10), "lobby: hello room")
            self.assertEqual(second.recv(timeout=10), "lobby: hello room")
