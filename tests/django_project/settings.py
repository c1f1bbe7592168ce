"""Settings of the test Django project: no database, no apps, no middleware."""

SECRET_KEY = "daphne-tests-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "tests.django_project.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict = {}
USE_TZ = True
# Bodies up to 1 MiB are read into memory; the tests post 200 KiB.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
