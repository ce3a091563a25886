"""What the dashboard shows of one deployment, as JSON, from whichever database and media root the environment
names (DATABASE_URL, MEDIA_ROOT): the restore drill (tests/docker/test_restore.py) runs it against the original
and against the restored copy, and the two must agree.

    python -m tests.docker.restore_probe <username> <deployment slug>
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def probe(username: str, slug: str) -> dict:
    from django.contrib.auth.models import User
    from django.test import Client
    from django.urls import reverse

    client = Client(HTTP_HOST="localhost")
    client.force_login(User.objects.get(username=username))
    pages = {name: client.get(url) for name, url in {
        "overview": reverse("overview"),
        "deployment": reverse("deployment", args=[slug]),
        "settings": reverse("deployment-settings", args=[slug]),
        "model": reverse("version-model", args=[slug, 1]),
    }.items()}
    overview = pages["overview"].content.decode()
    row = re.search(rf'<tr data-deployment="{slug}".*?</tr>', overview, re.S)
    row_html = row.group(0) if row else ""
    settings_page = pages["settings"].content.decode()
    return {
        "status": {name: response.status_code for name, response in pages.items()},
        "overview": {
            "health": re.findall(r'data-health="([^"]+)"', row_html),
            "numbers": [_text(cell) for cell in re.findall(r'<td class="num"[^>]*>(.*?)</td>', row_html, re.S)],
            "sparkline": re.findall(r"<title>(Accuracy[^<]*)</title>", row_html),
            "last_prediction": re.findall(r'<span title="(\d{4}-[^"]+)">', row_html),
        },
        "deployment": [_text(v) for v in re.findall(r'<span class="stat-value"[^>]*>(.*?)</span>', pages["deployment"].content.decode(), re.S)],
        # The next purge is a time of day, not data: left out.
        "retention": {key: _text(value) for key, value in re.findall(r'<dd data-retention="(\w+)">(.*?)</dd>', settings_page, re.S)
                      if key != "next"},
        "model_sha256": hashlib.sha256(pages["model"].content).hexdigest(),
    }


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    print(json.dumps(probe(sys.argv[1], sys.argv[2])))
