from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [path("hit/<slug:name>/", views.hit)]
