"""The JSON API (django-ninja). OpenAPI schema at /api/openapi.json, docs at /api/docs."""

from dashboard.api.routes import api, api_v1_serving

__all__ = ["api", "api_v1_serving"]
