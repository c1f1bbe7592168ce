"""The example's pages: ``/`` (the chat page) and ``/pid`` (which worker ran
the request)."""

from __future__ import annotations

import os

from django.http import HttpResponse, JsonResponse
from django.urls import path

PAGE = """<!doctype html>
<title>daphne + daphne-worker + Redis</title>
<h1>Chat (served by worker {pid})</h1>
<ul id="log"></ul>
<form id="f"><input id="t" autocomplete="off"><button>Send</button></form>
<script>
const log = document.getElementById("log");
const ws = new WebSocket(`ws://${{location.host}}/ws/chat`);
ws.onmessage = (e) => {{
  const m = JSON.parse(e.data);
  const li = document.createElement("li");
  li.textContent = `${{m.text}} (worker ${{m.worker}})`;
  log.appendChild(li);
}};
document.getElementById("f").onsubmit = (e) => {{
  e.preventDefault();
  const t = document.getElementById("t");
  ws.send(t.value);
  t.value = "";
}};
</script>
"""


def index(request):
    return HttpResponse(PAGE.format(pid=os.getpid()))


def pid(request):
    return JsonResponse({"worker": os.getpid()})


urlpatterns = [path("", index), path("pid", pid)]
