"""A real Django project (tests/django_project) served by daphne."""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest

from .conftest import run_daphne

pytest.importorskip("django")

DJANGO_APP = "tests.django_project.asgi:application"


@pytest.fixture(scope="module")
def django_server():
    env = {"DJANGO_SETTINGS_MODULE": "tests.django_project.settings"}
    with run_daphne(app=DJANGO_APP, env=env) as server:
        yield server


def test_django_get_view(django_server):
    response = httpx.get(django_server.url + "/hello/", params={"q": "daphne"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "message": "hello from django",
        "method": "GET",
        "path": "/hello/",
        "query": "daphne",
        "host": f"127.0.0.1:{django_server.port}",
    }


def test_django_reads_a_large_post_body(django_server):
    body = os.urandom(200 * 1024)
    response = httpx.post(
        django_server.url + "/echo/",
        content=body,
        headers={"content-type": "application/octet-stream"},
        timeout=20,
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["length"] == len(body)
    assert result["sha256"] == hashlib.sha256(body).hexdigest()
    assert result["content_type"] == "application/octet-stream"


def test_django_reads_a_chunked_post_body(django_server):
    chunks = [bytes([n]) * 10_000 for n in range(20)]
    body = b"".join(chunks)
    response = httpx.post(
        django_server.url + "/echo/", content=iter(chunks), timeout=20
    )
    assert response.status_code == 200, response.text
    assert response.json()["length"] == len(body)
    assert response.json()["sha256"] == hashlib.sha256(body).hexdigest()


def test_django_answers_404_for_an_unknown_url(django_server):
    response = httpx.get(django_server.url + "/no/such/page/")
    assert response.status_code == 404
    # Django's own (DEBUG = False) not-found page, not one made by daphne.
    assert "text/html" in response.headers["content-type"]
    assert "The requested resource was not found on this server." in response.text


def test_django_rejects_a_host_not_in_allowed_hosts(django_server):
    response = httpx.get(
        django_server.url + "/hello/", headers={"host": "evil.example"}
    )
    assert response.status_code == 400


def test_django_method_not_allowed_from_the_view(django_server):
    response = httpx.get(django_server.url + "/echo/")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
