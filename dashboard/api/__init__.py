"""The JSON API (django-ninja). OpenAPI schema at /api/openapi.json, docs at /api/docs."""

from dashboard.api.routes import api

__all__ = ["api"]
