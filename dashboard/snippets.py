"""Ready-to-run examples of sending a deployment's predictions and labels, in its own feature names and classes.

Shown on the token pages. Every value that comes from the deployment (feature names, class labels, the slug) is
JSON-encoded, and the curl body goes through a quoted heredoc, so a name holding quotes, `$` or backticks is sent
as it is and never reaches the shell as code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from monitoring.models import Deployment

TOKEN_VARIABLE = "WATCHKEEPER_TOKEN"
EXAMPLE_ID = "req-1"


@dataclass(frozen=True)
class Snippets:
    curl: str
    python: str


def _example_row(deployment: Deployment, at: datetime) -> dict:
    return {
        "id": EXAMPLE_ID,
        "timestamp": at.isoformat(timespec="seconds"),
        "features": dict.fromkeys(deployment.feature_names, 0.0),
        "predicted_label": deployment.class_labels[0] if deployment.class_labels else "",
    }


def ingestion_snippets(*, deployment: Deployment, base_url: str, token: str | None, at: datetime) -> Snippets:
    """curl and Python that send one prediction and then its label. `token`: the secret, when the page has it
    (just created); else the snippets read it from $WATCHKEEPER_TOKEN. `base_url` ends with a slash."""
    api = f"{base_url}api/v1/deployments/{deployment.slug}/"
    row = _example_row(deployment, at)
    classes = json.dumps(deployment.class_labels)  # in comments too: a label cannot end a comment line
    label = {"labels": [{"id": EXAMPLE_ID, "label": row["predicted_label"]}]}
    # A token is wk_<prefix>_<urlsafe secret>: nothing in it the shell would read.
    export = f"export {TOKEN_VARIABLE}={token}" if token else f"export {TOKEN_VARIABLE}=wk_…   # the token, shown once when created"
    curl = f"""{export}

# One prediction: {deployment.n_features} features by name; predicted_label is one of {classes}
curl -sS -X POST {json.dumps(api + "predictions")} \\
  -H "Authorization: Bearer ${TOKEN_VARIABLE}" -H "Content-Type: application/json" \\
  --data-binary @- <<'JSON'
{json.dumps({"predictions": [row]}, indent=2)}
JSON

# Its true class, once known
curl -sS -X POST {json.dumps(api + "labels")} \\
  -H "Authorization: Bearer ${TOKEN_VARIABLE}" -H "Content-Type: application/json" \\
  --data-binary @- <<'JSON'
{json.dumps(label)}
JSON
"""
    token_line = f"TOKEN = {json.dumps(token)}" if token else f'TOKEN = os.environ["{TOKEN_VARIABLE}"]'
    features = json.dumps(row["features"], indent=4)
    python = f"""import json
import os
import urllib.request
from datetime import datetime, timezone

API = {json.dumps(api)}
{token_line}


def send(path, body):
    request = urllib.request.Request(
        API + path, data=json.dumps(body).encode(), method="POST",
        headers={{"Authorization": f"Bearer {{TOKEN}}", "Content-Type": "application/json"}},
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)


features = {features}
prediction = {{
    "id": {json.dumps(EXAMPLE_ID)},
    "timestamp": datetime.now(timezone.utc).isoformat(),
    "features": features,
    "predicted_label": {json.dumps(row["predicted_label"])},  # one of {classes}
}}
print(send("predictions", {{"predictions": [prediction]}}))
print(send("labels", {{"labels": [{{"id": {json.dumps(EXAMPLE_ID)}, "label": {json.dumps(row["predicted_label"])}}}]}}))
"""
    return Snippets(curl=curl, python=python)
