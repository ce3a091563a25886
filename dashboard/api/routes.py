"""The API object, mounted at /api/v1/: schema at /api/v1/openapi.json, interactive docs at /api/v1/docs.

The same routes answer at the old unversioned /api/... with a Deprecation header (dashboard/urls.py,
dashboard/middleware.py ApiDeprecationMiddleware). One router per subdomain; a new one is one add_router line.
"""

from ninja import NinjaAPI

from dashboard.api import alerting, deployments, ingestion, jobs, machine_access, reports, rollouts, serving
from dashboard.api.errors import install_handlers
from dashboard.api.parsing import OrjsonParser

api = NinjaAPI(
    title="Watchkeeper API",
    version="1",
    description=(
        "Monitor and maintain deployed ONNX classifiers. Base path: `/api/v1`. The old unversioned `/api/...` "
        "paths still answer, with a `Deprecation` header and a `Link` to their `/api/v1` successor.\n\n"
        "**Ingestion** (`/predictions`, `/labels`, `/batches`) takes a per-deployment token: "
        "`Authorization: Bearer wk_<prefix>_<secret>` (create one under Tokens or with `manage.py create_api_token`).\n\n"
        "**Management and reads** take, as `Authorization: Bearer`, a personal access token (`wkp_…`: acts as you, "
        "with your role in each team; create one on your account's Tokens page or `POST /me/tokens`) or a team "
        "service token (`wks_…`: a member of one team with the role chosen for it, viewer or operator; approver only "
        "if the team allows it; `POST /teams/{team}/service-tokens`). Without a bearer header they use the "
        "dashboard's session cookie and, on writes, its CSRF token (`X-CSRFToken`). Roles per team: "
        "viewer < operator < approver. An expired or revoked token gets 401.\n\n"
        "**Errors** are RFC 9457 problems, `application/problem+json`: "
        '`{"type", "title", "status", "detail", "errors": [{"row", "line", "field", "message"}]}`.\n\n'
        "**Lists** are paged: `?page=<n>&limit=<1..1000>` (100 by default) answer "
        '`{"items", "count", "page", "limit", "next", "previous"}`; follow `next` until it is null. '
        "Evaluation runs, metric series, drift reports, per-feature drift, alerts and the audit log have a CSV "
        "export at the same path plus `.csv`, with the same filters, streamed.\n\n"
        "**Prediction batches**: a new batch answers `201 Created`, a large one still being indexed "
        "`202 Accepted`, both with `Location:` its status (`GET /deployments/{slug}/batches/{id}`); a retry with "
        "the same `Idempotency-Key` answers as the first time did, with `Idempotent-Replayed: true`."
    ),
    urls_namespace="api",
    openapi_url="/openapi.json",
    docs_url="/docs",
    parser=OrjsonParser(),
)
install_handlers(api)
api.add_router("", deployments.router)
api.add_router("", ingestion.router)
api.add_router("", jobs.router)
api.add_router("", reports.router)
api.add_router("", alerting.router)
api.add_router("", machine_access.router)
api.add_router("", serving.router)  # the serving contract: docs/serving.md
api.add_router("", rollouts.router)
