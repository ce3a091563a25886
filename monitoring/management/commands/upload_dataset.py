"""manage.py upload_dataset <slug> <file.csv|file.parquet> --kind reference|evaluation [--name NAME]"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandParser

from monitoring import services
from monitoring.management.commands._cli import deployment_named, read_file, service_errors
from monitoring.models import Dataset


class Command(BaseCommand):
    help = (
        "Upload a CSV or Parquet file as the deployment's reference or evaluation dataset. It has a column for "
        "every feature (any order) and, for an evaluation set, a 'label' column."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("file", help="The CSV or Parquet file")
        parser.add_argument("--kind", required=True, choices=Dataset.Kind.values)
        parser.add_argument("--name", default="", help="Defaults to the file name")

    def handle(self, *args, **options) -> None:
        deployment = deployment_named(options["slug"])
        data = read_file(options["file"])
        with service_errors():
            dataset = services.dataset_upload(
                deployment=deployment, kind=options["kind"], data=data, filename=Path(options["file"]).name,
                name=options["name"], by=None,
            )
        labels = "with labels" if dataset.has_labels else "without labels"
        self.stdout.write(f"Registered {dataset.kind} dataset {dataset.name!r} for {deployment.slug}: {dataset.n_rows} rows, {labels}.")
