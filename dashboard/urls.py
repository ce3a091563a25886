from django.contrib import admin
from django.urls import include, path

from dashboard.api import api
from dashboard.views.assets import favicon
from dashboard.views.health import healthz, readyz
from dashboard.views.metrics import metrics

# ninja hands out its URLconf once; the same patterns serve /api/v1/ and, deprecated, the old /api/
# (ApiDeprecationMiddleware marks those answers). Names reverse to /api/v1/: "api" is the default instance.
api_urls, api_app, api_namespace = api.urls

# A database error outside a view is a 503 (dashboard/middleware.py); other errors a plain 500.
handler500 = "dashboard.middleware.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", (api_urls, api_app, api_namespace)),
    path("api/", include((api_urls, api_app), namespace="api-deprecated")),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("favicon.ico", favicon, name="favicon"),
    path("", include("dashboard.views.urls")),
]
