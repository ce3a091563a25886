"""manage.py upload_dataset <slug> <file.csv> --kind reference|evaluation [--name NAME]"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitoring import services
from monitoring.management.commands._cli import deployment_named, read_file, service_errors
from monitoring.models import Dataset
from monitoring.tabular import TableError, parse_csv


class Command(BaseCommand):
    help = (
        "Upload a CSV as the deployment's reference or evaluation dataset. The header names every feature "
        "(any order) and, for an evaluation set, a 'label' column."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("file", help="The CSV file")
        parser.add_argument("--kind", required=True, choices=Dataset.Kind.values)
        parser.add_argument("--name", default="", help="Defaults to the file name")

    def handle(self, *args, **options) -> None:
        deployment = deployment_named(options["slug"])
        try:
            table = parse_csv(read_file(options["file"]), feature_names=deployment.feature_names)
        except TableError as exc:
            raise CommandError(f"{options['file']}: {exc.message}") from None
        with service_errors():
            dataset = services.dataset_register(
                deployment=deployment,
                kind=options["kind"],
                name=options["name"] or Path(options["file"]).name,
                X=table.X,
                y=table.y,
                by=None,
            )
        labels = "with labels" if dataset.has_labels else "without labels"
        self.stdout.write(f"Registered {dataset.kind} dataset {dataset.name!r} for {deployment.slug}: {dataset.n_rows} rows, {labels}.")
