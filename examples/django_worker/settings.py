"""Django settings for examples/django_worker (a demo: not for production).

Redis is ``$REDIS_URL`` (default ``redis://127.0.0.1:6390/0``, the port
``run.py`` starts its own redis-server on).
"""

from __future__ import annotations

import os

SECRET_KEY = "examples-django-worker-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "examples.django_worker.urls"
INSTALLED_APPS = ["django.contrib.contenttypes", "channels"]
DATABASES: dict = {}
USE_TZ = True

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [os.environ.get("REDIS_URL", "redis://127.0.0.1:6390/0")],
            "prefix": "django-worker-example:",
        },
    }
}
