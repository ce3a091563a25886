from django.contrib import admin
from django.urls import include, path

from dashboard.api import api, api_v1_serving
from dashboard.views.assets import favicon
from dashboard.views.health import healthz, readyz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", api_v1_serving.urls),  # the serving contract; the whole API moves here (issue 13)
    path("api/", api.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("favicon.ico", favicon, name="favicon"),
    path("", include("dashboard.views.urls")),
]
