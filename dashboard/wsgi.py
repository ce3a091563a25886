import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
application = get_wsgi_application()

from django.conf import settings  # noqa: E402  (configured by the line above)

if settings.OTEL_ENABLED:
    from dashboard.integrations import otel_instrument_django

    otel_instrument_django()

# Build the URLconf (and with it the API's schemas) now, not in the first request each worker serves:
# that took about a second, and a client's first batch paid for it.
get_resolver().url_patterns  # noqa: B018  (reading the property builds it)
import workers.tasks  # noqa: E402, F401  (what the API enqueues with; imported here for the same reason)
