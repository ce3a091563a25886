"""One page shape for every list: {"items", "count", "page", "limit", "next", "previous"}.

Page numbers, not cursors: the lists here are a deployment's own rows (versions, runs, alerts, audit events),
at most tens of thousands, where COUNT(*) is cheap and "page 3 of 12" is what a person wants. `next` and
`previous` are absolute URLs with every other query parameter kept, so a client follows `next` until null.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.http.request import QueryDict
from ninja import Field, Schema
from ninja.pagination import PaginationBase

DEFAULT_LIMIT = 100
# A page is one response body: 1000 rows of any of our schemas stays well under a megabyte.
MAX_LIMIT = 1000


def _link(request: HttpRequest, page: int) -> str:
    query: QueryDict = request.GET.copy()
    query["page"] = str(page)
    return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")


class Pages(PaginationBase):
    class Input(Schema):
        page: int = Field(1, ge=1, description="1-based page number")
        limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"Items per page, at most {MAX_LIMIT}")

    class Output(Schema):
        items: list[Any]
        count: int = Field(description="Items in all pages")
        page: int
        limit: int
        next: str | None = Field(description="The next page's URL; null on the last page")
        previous: str | None = Field(description="The previous page's URL; null on the first page")

    def paginate_queryset(self, queryset: Any, pagination: Input, request: HttpRequest, **params: Any) -> dict:
        count = self._items_count(queryset)
        offset = (pagination.page - 1) * pagination.limit
        items = queryset[offset : offset + pagination.limit]
        return {
            "items": items,
            "count": count,
            "page": pagination.page,
            "limit": pagination.limit,
            "next": _link(request, pagination.page + 1) if offset + pagination.limit < count else None,
            "previous": _link(request, pagination.page - 1) if pagination.page > 1 else None,
        }
