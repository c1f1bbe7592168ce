"""Views of the test Django project."""

import hashlib
import time

from django.http import HttpResponseNotAllowed, JsonResponse
from django.views.decorators.csrf import csrf_exempt


def hello(request):
    """A GET view: says hello and echoes what Django saw of the request."""
    return JsonResponse(
        {
            "message": "hello from django",
            "method": request.method,
            "path": request.path,
            "query": request.GET.get("q"),
            # get_host() checks ALLOWED_HOSTS (a DisallowedHost becomes a 400).
            "host": request.get_host(),
        }
    )


@csrf_exempt
def echo(request):
    """Reads the whole POST body; returns its length, SHA-256 and its start."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    body = request.body
    return JsonResponse(
        {
            "length": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "head": body[:32].decode("latin-1"),
            "content_type": request.content_type,
        }
    )


def slow(request):
    """Answers after ``?s=`` seconds (for the HTTP timeout)."""
    time.sleep(float(request.GET.get("s", "2")))
    return JsonResponse({"slept": True})


def users(request):
    """The usernames in the database (project_settings only: needs auth)."""
    from django.contrib.auth.models import User

    return JsonResponse(
        {"users": list(User.objects.values_list("username", flat=True))}
    )
