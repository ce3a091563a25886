"""manage.py upload_predictions <slug> <file.csv|file.parquet> [--labels] [--key KEY]"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitoring import services
from monitoring.management.commands._cli import deployment_named, read_file, service_errors
from monitoring.models import PredictionBatch


class Command(BaseCommand):
    help = (
        "Bulk-load production predictions (columns id, timestamp, predicted_label, every feature, optionally "
        "proba_<class>) or, with --labels, true labels (columns id, label) from a CSV or Parquet file. "
        "All or nothing; loading the same file again stores nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("file", help="A .csv or .parquet file")
        parser.add_argument("--labels", action="store_true", help="The file holds true labels, not predictions")
        parser.add_argument("--key", default=None, help="Idempotency key (default: the file's sha256)")

    def handle(self, *args, **options) -> None:
        deployment = deployment_named(options["slug"])
        data = read_file(options["file"])
        name = Path(options["file"]).name
        with service_errors():
            if options["labels"]:
                labels = services.labels_upload(deployment=deployment, data=data, filename=name)
                self.stdout.write(f"Labelled {labels.updated:,} of {deployment.slug}'s predictions from {name}.")
                return
            result = services.predictions_upload(
                deployment=deployment, data=data, filename=name, idempotency_key=options["key"]
            )
        if result.replayed:
            self.stdout.write(f"{name} was already stored as batch {result.batch_id}; nothing was stored again.")
        else:
            self.stdout.write(f"Stored {result.created:,} predictions for {deployment.slug} as batch {result.batch_id}.")
        if result.status == PredictionBatch.State.PENDING and result.batch_id is not None:  # an upload always has one
            # Nobody waits on a web request here, so the command finishes the job: when it returns, labels join.
            # The batch's own state decides, whoever indexed it (this call, a worker, or an in-process task).
            services.batches_index(deployment_id=deployment.pk)
            state, stored = PredictionBatch.objects.values_list("state", "result").get(pk=result.batch_id)
            if state == PredictionBatch.State.REJECTED:
                raise CommandError(stored["message"])
            self.stdout.write(f"Indexed its {result.created:,} ids: labels can now be joined to it.")
