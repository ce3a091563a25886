"""manage.py sign_versions [--resign]: sign the versions not signed by the current key (run by `entrypoint.sh
migrate`, so versions registered before signing existed, or while no key was set, get served)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitoring import services, signing


class Command(BaseCommand):
    help = "Sign every model version not yet signed by SIGNING_KEY_FILE's key; --resign all of them (after a rotation)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--resign", action="store_true", help="Sign every version again, with the current key")
        parser.add_argument("--if-key", action="store_true", help="Do nothing (and succeed) when no key is configured")

    def handle(self, *args, **options) -> None:
        try:
            count = services.versions_sign(resign=options["resign"])
        except signing.SigningKeyMissing as exc:
            if options["if_key"]:
                self.stderr.write(f"No versions signed: {exc}")
                return
            raise CommandError(str(exc)) from None
        self.stdout.write(f"signed {count} version(s)")
