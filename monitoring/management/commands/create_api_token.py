"""manage.py create_api_token <slug> [--name N]: prints the token once, on stdout, alone."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from monitoring import services
from monitoring.management.commands._cli import deployment_named, service_errors


class Command(BaseCommand):
    help = "Create an ingestion token for a deployment. Only its hash is stored: save the printed token now."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="token", help="What the token is for")

    def handle(self, *args, **options) -> None:
        deployment = deployment_named(options["slug"])
        with service_errors():
            token, plaintext = services.token_create(deployment=deployment, name=options["name"], by=None)
        # The token alone on stdout, so `TOKEN=$(manage.py create_api_token ...)` works; the note goes to stderr.
        self.stderr.write(f"Token {token.name!r} for {deployment.slug} (prefix {token.prefix}). It is shown only once:")
        self.stdout.write(plaintext)
