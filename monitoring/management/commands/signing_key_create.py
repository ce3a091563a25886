"""manage.py signing_key_create [PATH]: a new Ed25519 signing key (PKCS8 PEM, mode 0600), unless one is there."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitoring import signing


class Command(BaseCommand):
    help = "Create the Ed25519 key that signs model versions (docs/serving.md). Never overwrites a key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", nargs="?", help="Where to write it (default: SIGNING_KEY_FILE)")

    def handle(self, *args, **options) -> None:
        path = options["path"] or settings.SIGNING_KEY_FILE
        if not path:
            raise CommandError("Give a path, or set SIGNING_KEY_FILE.")
        created = signing.key_file_create(Path(path))
        key_id = signing.public_key_info(signing._load(str(path), Path(path).stat().st_mtime_ns).public_key()).key_id
        self.stdout.write(f"{'created' if created else 'kept the existing'} signing key {path} (key id {key_id})")
