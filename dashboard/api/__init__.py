"""The JSON API (django-ninja). OpenAPI schema at /api/v1/openapi.json, docs at /api/v1/docs."""

from dashboard.api.routes import api

__all__ = ["api"]
