from django.contrib import admin
from django.urls import include, path

from dashboard.api import api
from dashboard.views.health import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("healthz", healthz, name="healthz"),
    path("", include("dashboard.views.urls")),
]
