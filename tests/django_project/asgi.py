"""ASGI entry point of the test Django project."""

import os

import django.core.asgi

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_project.settings")

application = django.core.asgi.get_asgi_application()
