"""URL routes of the test project."""

from django.urls import path

from . import views

urlpatterns = [
    path("hello/", views.hello),
    path("echo/", views.echo),
    path("slow/", views.slow),
    path("users/", views.users),
]
