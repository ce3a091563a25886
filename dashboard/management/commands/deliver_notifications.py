"""`manage.py deliver_notifications`: the alert-delivery sweep in this process (flush due groups, take back lost
leases, send what is due), once or every --every seconds. The embedded demo has no beat and no worker: docker/demo.sh
runs this beside the web process there, so its alerts reach the local receivers too."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand

from workers.notifications.delivery import deliver_due


class Command(BaseCommand):
    help = "Send the alert notifications that are due, in this process (once, or in a loop with --every)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--every", type=float, default=0.0, help="Seconds between sweeps; 0 = once (default)")
        parser.add_argument("--for", dest="duration", type=float, default=0.0, help="Stop after this many seconds")

    def handle(self, *args, every: float, duration: float, **options) -> None:
        started = time.monotonic()
        while True:
            results = deliver_due()
            sent = sum(1 for r in results if r.status == "sent")
            if results:
                self.stdout.write(f"{sent} of {len(results)} notification(s) sent", ending="\n")
                self.stdout.flush()
            if every <= 0 or (duration and time.monotonic() - started + every > duration):
                return
            time.sleep(every)
