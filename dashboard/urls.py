from django.contrib import admin
from django.urls import include, path

from dashboard.api import api
from dashboard.views.assets import favicon
from dashboard.views.health import healthz, readyz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("favicon.ico", favicon, name="favicon"),
    path("", include("dashboard.views.urls")),
]
