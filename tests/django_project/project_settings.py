"""Settings of the test project set up as Channels' documentation sets one up.

``daphne`` first in INSTALLED_APPS, ASGI_APPLICATION, static files, a SQLite
database, an in-memory channel layer. tests/test_runserver.py and the
live-server tests (live_tests.py) use it; environment variables vary it:

- ``DAPHNE_TEST_DB_DIR``: where the SQLite files go (default: the temp dir);
- ``DAPHNE_TEST_DEBUG=1``: DEBUG on;
- ``DAPHNE_TEST_STATICFILES_FIRST=1``: ``django.contrib.staticfiles`` listed
  before ``daphne``;
- ``DAPHNE_TEST_ASGI_APPLICATION``: another ASGI_APPLICATION (empty: none).
"""

import os
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DB_DIR = Path(os.environ.get("DAPHNE_TEST_DB_DIR") or tempfile.gettempdir())

SECRET_KEY = "daphne-tests-not-a-secret"
DEBUG = os.environ.get("DAPHNE_TEST_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "tests.django_project.urls"

INSTALLED_APPS = [
    "daphne",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
]
if os.environ.get("DAPHNE_TEST_STATICFILES_FIRST") == "1":
    INSTALLED_APPS.remove("daphne")
    INSTALLED_APPS.append("daphne")
MIDDLEWARE: list[str] = []

ASGI_APPLICATION = os.environ.get(
    "DAPHNE_TEST_ASGI_APPLICATION", "tests.django_project.channels_asgi.application"
)
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(DB_DIR / "daphne-project.sqlite3"),
        # A file: ChannelsLiveServerTestCase refuses in-memory databases,
        # since its server runs in another process.
        "TEST": {"NAME": str(DB_DIR / "test-daphne-project.sqlite3")},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [HERE / "static"]
