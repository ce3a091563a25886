"""manage.py upload_version <slug> <file.onnx> [--recipe file.skops] [--notes TEXT]"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from monitoring import services
from monitoring.management.commands._cli import deployment_named, read_file, service_errors


class Command(BaseCommand):
    help = "Upload an ONNX classifier as a new version (active if it is the first, else a candidate)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("file", help="The ONNX model")
        parser.add_argument("--recipe", help="A skops file of the scikit-learn estimator, to allow retraining")
        parser.add_argument("--notes", default="")

    def handle(self, *args, **options) -> None:
        deployment = deployment_named(options["slug"])
        data = read_file(options["file"])
        recipe = read_file(options["recipe"]) if options["recipe"] else None
        with service_errors():
            version = services.version_register(
                deployment=deployment, data=data, recipe=recipe, notes=options["notes"], by=None
            )
        self.stdout.write(
            f"Registered {deployment.slug} v{version.number} ({version.status}), sha256 {version.sha256[:12]}…"
        )
