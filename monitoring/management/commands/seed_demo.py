"""`manage.py seed_demo`: the demo team, its users and three real deployments with a month of history."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from workers.demo import MIN_DAYS, seed_demo


class Command(BaseCommand):
    help = (
        "Seed the demo: users demo (approver), operator and viewer in the team 'ML Platform', and three "
        "deployments with real scikit-learn models and simulated traffic. Deployments that exist are left alone."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--password", default="demo", help="Password for the demo users (default: demo).")
        parser.add_argument("--days", type=int, default=30, help=f"Days of history (at least {MIN_DAYS}).")
        parser.add_argument("--per-day", type=int, default=200, help="Predictions per weekday, about.")

    def handle(self, *args, password: str, days: int, per_day: int, **options) -> None:
        if not password:
            raise CommandError("The password must not be empty.")
        try:
            seed_demo(days=days, per_day=per_day, password=password, log=self.stdout.write)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Log in as demo / {password} (approver); operator and viewer have the same password."
            )
        )
