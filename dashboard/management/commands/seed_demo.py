"""`manage.py seed_demo`: the demo team, its users and three real deployments with a month of history.

A dashboard command, not a monitoring one: it runs workers.demo, and the domain (monitoring) imports no workers."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from workers.demo import DEMO_PASSWORD, MIN_DAYS, seed_demo


class Command(BaseCommand):
    help = (
        "Seed the demo: users demo (approver), operator and viewer in the team 'ML Platform', and three "
        "deployments with real scikit-learn models and simulated traffic. Deployments that exist are left alone. "
        "New users get a random password, shown once; users that exist keep theirs."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--password", help="Give every demo user this password (checked by the password validators)."
        )
        parser.add_argument(
            "--demo-passwords", action="store_true",
            help=f"Give every demo user the password {DEMO_PASSWORD!r}, unchecked. For `make demo` on a laptop only.",
        )
        parser.add_argument("--days", type=int, default=30, help=f"Days of history (at least {MIN_DAYS}).")
        parser.add_argument("--per-day", type=int, default=200, help="Predictions per weekday, about.")

    def handle(
        self, *args, password: str | None, demo_passwords: bool, days: int, per_day: int, **options
    ) -> None:
        if password is not None and demo_passwords:
            raise CommandError("Give --password or --demo-passwords, not both.")
        if password == "":
            raise CommandError("The password must not be empty.")
        try:
            seed_demo(
                days=days, per_day=per_day, password=password, demo_passwords=demo_passwords, log=self.stdout.write
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if demo_passwords:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Log in as demo / {DEMO_PASSWORD} (approver); operator and viewer have the same password."
                )
            )
        else:
            self.stdout.write(self.style.SUCCESS("Seeded. Log in as demo (approver), operator or viewer."))
