"""Files that browsers ask for at fixed paths, outside STATIC_URL."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseRedirect
from django.templatetags.static import static
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_GET

# A day: the target is a hashed name that changes whenever the icon does, so the redirect itself must not be
# kept for ever (a 301 would be).
FAVICON_REDIRECT_MAX_AGE = 24 * 3600


@require_GET
def favicon(request: HttpRequest) -> HttpResponseRedirect:
    """/favicon.ico, which browsers fetch without being told: our SVG icon, under its hashed name."""
    response = HttpResponseRedirect(static("img/favicon.svg"))
    patch_cache_control(response, public=True, max_age=FAVICON_REDIRECT_MAX_AGE)
    return response
