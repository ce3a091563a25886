"""manage.py create_deployment --team T --name N [--slug S] (--features-from-onnx FILE | --features a,b --classes 0,1)"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from monitoring import services
from monitoring.management.commands._cli import read_file, service_errors
from monitoring.runtime import InvalidModelError, inspect_model


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _threshold(value: str) -> tuple[str, float]:
    name, _, floor = value.partition("=")
    try:
        return name.strip(), float(floor)
    except ValueError:
        raise CommandError(f"--threshold takes metric=floor, e.g. accuracy=0.9; got {value!r}.") from None


class Command(BaseCommand):
    help = "Create a deployment: the schema (features, classes) every model version and prediction must fit."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", required=True, help="Team name or slug; created if it does not exist")
        parser.add_argument("--name", required=True)
        parser.add_argument("--slug", default="", help="Defaults to the name, slugified")
        parser.add_argument("--description", default="")
        schema = parser.add_mutually_exclusive_group(required=True)
        schema.add_argument("--features-from-onnx", metavar="FILE",
                            help="Read feature names and classes from a model's metadata (as written by Watchkeeper's converters)")
        schema.add_argument("--features", help="Comma-separated feature names, in the model's input order")
        parser.add_argument("--classes", help="Comma-separated class labels (required with --features)")
        parser.add_argument("--threshold", action="append", default=[], metavar="METRIC=FLOOR",
                            help="Alert when a metric drops below a floor, e.g. accuracy=0.9 (repeatable)")

    def handle(self, *args, **options) -> None:
        features, classes = self._schema(options)
        thresholds = dict(_threshold(value) for value in options["threshold"])
        with service_errors(), transaction.atomic():  # a refused deployment leaves no new team behind
            team = services.team_get_or_create(name=options["team"])
            deployment = services.deployment_create(
                team=team,
                name=options["name"],
                slug=options["slug"],
                description=options["description"],
                feature_names=features,
                class_labels=classes,
                metric_thresholds=thresholds,
                by=None,
            )
        self.stdout.write(
            f"Created deployment {deployment.slug!r} in team {team.slug!r}: "
            f"{len(features)} features, classes {deployment.class_labels}."
        )

    def _schema(self, options: dict) -> tuple[list[str], list[str]]:
        classes = _split(options["classes"]) if options["classes"] else []
        if options["features"]:
            if not classes:
                raise CommandError("--features needs --classes too.")
            return _split(options["features"]), classes
        path = options["features_from_onnx"]
        try:
            signature = inspect_model(read_file(path))
        except InvalidModelError as exc:
            raise CommandError(f"{path}: {exc}") from None
        if not signature.feature_names:
            raise CommandError(
                f"{path} has no feature_names metadata; pass --features with the {signature.n_features} names instead."
            )
        classes = classes or signature.class_labels
        if not classes:
            raise CommandError(f"{path} does not say which classes it predicts; pass --classes.")
        return signature.feature_names, classes
