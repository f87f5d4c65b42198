"""URLs of the Django example site."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("chat", views.chat),
    path("stream", views.stream),
    path("health", views.health),
]
