"""A minimal Django project served by daphne in tests/test_django.py."""
