"""Slack incoming webhooks: a Block Kit message with the severity, what moved, and links to the report and to
acknowledge. The URL carries Slack's token, so it is stored sealed."""

from __future__ import annotations

import json
from typing import Any

from monitoring.models import Notification, NotificationChannel
from monitoring.sealing import Unsealable, unseal
from workers.notifications import http
from workers.notifications.base import Sent, Transport, TransportError, data_of, register

SEVERITY_EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}
# Slack allows 50 blocks a message; beyond this many alerts the rest are counted, not listed.
MAX_LISTED = 20


def slack_message(notification: Notification) -> dict[str, Any]:
    data = data_of(notification)
    severity = str(data.get("severity", "info"))
    resolved = notification.event == Notification.Event.RESOLVED
    head = ":white_check_mark: Resolved" if resolved else f"{SEVERITY_EMOJI.get(severity, '')} {severity.capitalize()}"
    deployment = data.get("deployment") or {}
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{head}: {deployment.get('name', 'Watchkeeper')}"[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": str(data.get("summary", ""))[:3000]}},
    ]
    alerts = data.get("alerts", [])
    for alert in alerts[:MAX_LISTED]:
        line = f"*{alert['title']}* ({alert['kind_label']}, {alert['severity']}, {alert['status']})"
        if alert.get("message"):
            line += f"\n{alert['message'][:500]}"
        links = [f"<{alert['url']}|Alert>"] + ([f"<{alert['report_url']}|Report>"] if alert.get("report_url") else [])
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": line + "\n" + " · ".join(links)}})
    if len(alerts) > MAX_LISTED:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"… and {len(alerts) - MAX_LISTED} more"}]})
    buttons = []
    if deployment.get("url"):
        buttons.append({"type": "button", "text": {"type": "plain_text", "text": "Open deployment"}, "url": deployment["url"]})
    if data.get("ack_url"):
        buttons.append({"type": "button", "style": "primary", "text": {"type": "plain_text", "text": "Acknowledge"},
                        "url": data["ack_url"]})
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    return {"text": str(data.get("summary", ""))[:3000], "blocks": blocks}


@register("slack")
class SlackTransport(Transport):
    def send(self, *, notification: Notification, channel: NotificationChannel) -> Sent:
        try:
            url = unseal(channel.secret_sealed)
        except Unsealable as exc:
            raise TransportError(str(exc), permanent=True) from None
        body = json.dumps(slack_message(notification)).encode()
        response = http.post(url, body=body, headers={})
        return Sent(status_code=response.status_code)
