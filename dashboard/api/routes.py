"""The API object, mounted at /api/: schema at /api/openapi.json, interactive docs at /api/docs."""

from ninja import NinjaAPI

from dashboard.api import alerting, deployments, ingestion, jobs, rollouts, serving
from dashboard.api.errors import install_handlers
from dashboard.api.parsing import OrjsonParser

api = NinjaAPI(
    title="Watchkeeper API",
    version="1",
    description=(
        "Monitor and maintain deployed ONNX classifiers.\n\n"
        "**Ingestion** (`/predictions`, `/labels`) takes a per-deployment token: "
        "`Authorization: Bearer wk_<prefix>_<secret>` (create one under Tokens or with `manage.py create_api_token`).\n\n"
        "**Management** endpoints use the dashboard's session cookie and, on writes, its CSRF token "
        "(`X-CSRFToken` header). Roles per team: viewer < operator < approver.\n\n"
        'Every error is JSON: `{"detail": "...", "errors": [{"row", "line", "field", "message"}]}`.'
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
api.add_router("", alerting.router)
api.add_router("", rollouts.router)

# The serving contract at /api/v1/ (docs/serving.md). A second API object only until the whole API moves under
# /api/v1/ (issue 13, item 2): then serving.router joins `api` above and this goes.
api_v1_serving = NinjaAPI(
    title="Watchkeeper serving API",
    version="1-serving",
    description="The serving contract: docs/serving.md.",
    urls_namespace="api-v1-serving",
    openapi_url="/serving/openapi.json",
    docs_url="/serving/docs",
    parser=OrjsonParser(),
)
install_handlers(api_v1_serving)
api_v1_serving.add_router("", serving.router)
