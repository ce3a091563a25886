# When each version served (issue 16, "the health history is not what served"): the health chart keeps only
# the points a version scored while it was serving. Existing deployments get their periods from the versions'
# activated_at and retired_at; a version that was rolled back to keeps only its latest period, as before.

import django.db.models.deletion
from django.db import migrations, models


def backfill(apps, schema_editor):
    ModelVersion = apps.get_model("monitoring", "ModelVersion")
    ServingPeriod = apps.get_model("monitoring", "ServingPeriod")
    served = ModelVersion.objects.filter(activated_at__isnull=False).order_by("deployment_id", "activated_at")
    periods, previous = [], None
    for version in served:
        if previous is not None and previous.deployment_id == version.deployment_id and previous.ended_at is None:
            previous.ended_at = version.activated_at  # replaced by this one
        ended = None if version.status == "active" else version.retired_at
        previous = ServingPeriod(
            deployment_id=version.deployment_id, version_id=version.pk, started_at=version.activated_at, ended_at=ended
        )
        periods.append(previous)
    # A retired version with no later activation and no retired_at: it stopped when something else started,
    # which is unknown; close it at its own start rather than claim it served to this day.
    for period in periods:
        if period.ended_at is None and not ModelVersion.objects.filter(pk=period.version_id, status="active").exists():
            period.ended_at = period.started_at
    ServingPeriod.objects.bulk_create(periods)


class Migration(migrations.Migration):

    dependencies = [
        ("monitoring", "0013_version_retirement"),
    ]

    operations = [
        migrations.CreateModel(
            name="ServingPeriod",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("started_at", models.DateTimeField()),
                ("ended_at", models.DateTimeField(blank=True, null=True)),
                (
                    "deployment",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="serving_periods",
                        to="monitoring.deployment",
                    ),
                ),
                (
                    "version",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="serving_periods",
                        to="monitoring.modelversion",
                    ),
                ),
            ],
            options={"ordering": ["started_at"]},
        ),
        migrations.AddConstraint(
            model_name="servingperiod",
            constraint=models.UniqueConstraint(
                condition=models.Q(("ended_at__isnull", True)), fields=("deployment",),
                name="serving_one_open_period_per_deployment",
            ),
        ),
        migrations.AddIndex(
            model_name="servingperiod",
            index=models.Index(fields=["version", "started_at"], name="serving_version_idx"),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
