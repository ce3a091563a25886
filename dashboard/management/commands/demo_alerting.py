"""`manage.py demo_alerting`: the demo team gets an email and a webhook channel on local receivers, and a rule
that sends them every warning and critical alert; the alerts already open (the wine deployment's drift episode) are routed, so they
arrive as one grouped notification per deployment once the group wait ends. Run by docker/demo.sh after the seed."""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from monitoring import services
from monitoring.models import NotificationChannel, Team
from workers.demo import TEAM_NAME


class Command(BaseCommand):
    help = "Give the demo team local alert channels (email + webhook) and a routing rule for warnings and worse. Idempotent."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--webhook-url", required=True)
        parser.add_argument("--email", required=True)
        parser.add_argument("--secret-file", required=True, help="Where to write the webhook's signing secret (for the receiver)")

    def handle(self, *args, webhook_url: str, email: str, secret_file: str, **options) -> None:
        team = Team.objects.filter(name=TEAM_NAME).first()
        demo = get_user_model().objects.filter(username="demo").first()
        if team is None or demo is None:
            raise CommandError("Seed the demo first (manage.py seed_demo).")
        if NotificationChannel.objects.filter(team=team).exists():
            self.stdout.write("The demo team already has alert channels; left as they are.")
            return
        hook, secret = services.channel_create(team=team, kind="webhook", name="Local receiver", target=webhook_url, by=demo)
        mail, _ = services.channel_create(team=team, kind="email", name="On-call email", target=email, by=demo)
        Path(secret_file).write_text(f"{secret}\n")
        Path(secret_file).chmod(0o600)
        # Warnings and worse: the demo's waiting candidates (info) stay in the app, so a guard's abort arrives as
        # one notification of its own, not folded into the candidates' group and held for its group interval.
        services.routing_rule_create(team=team, name="Warnings and worse", channels=[hook, mail],
                                     min_severity="warning", by=demo)
        routed = services.alerts_route_open(team_id=team.pk, now=timezone.now())
        self.stdout.write(f"Alert channels ready: {routed} open alert(s) routed; they go out after the 30 s group wait.")
