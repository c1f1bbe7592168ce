"""A live-server test case whose application cannot be imported.

tests/test_live_server.py runs this module with Django's test runner and
expects setUpClass to fail with RuntimeError carrying the traceback from
daphne's child process (broken_asgi.py's NameError), not with connection
errors from every test.
"""

from channels.testing import ChannelsLiveServerTestCase
from django.test import override_settings


@override_settings(ASGI_APPLICATION="tests.django_project.broken_asgi.application")
class BrokenApplicationTests(ChannelsLiveServerTestCase):
    def test_never_runs(self):
        self.fail("the live server should not have started")
