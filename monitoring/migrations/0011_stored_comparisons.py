# Comparison statistics stored per (active, candidate, window), computed on a worker (issue 10, item 4).

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("monitoring", "0010_recipe_checks"),
    ]

    operations = [
        migrations.CreateModel(
            name="VersionComparisonResult",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("source", models.CharField(choices=[("evaluation_set", "Evaluation set"), ("production", "Labelled production window")], max_length=32)),
                ("window_key", models.CharField(max_length=64)),
                ("description", models.CharField(max_length=300)),
                ("window_days", models.PositiveIntegerField(blank=True, null=True)),
                ("window_start", models.DateTimeField(blank=True, null=True)),
                ("window_end", models.DateTimeField(blank=True, null=True)),
                ("status", models.CharField(choices=[("queued", "Queued"), ("running", "Running"), ("succeeded", "Succeeded"), ("failed", "Failed")], default="queued", max_length=16)),
                ("n_rows", models.PositiveIntegerField(default=0)),
                ("statistics", models.JSONField(blank=True, null=True)),
                ("error", models.TextField(blank=True)),
                ("queued_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("computed_at", models.DateTimeField(blank=True, null=True)),
                ("active", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to="monitoring.modelversion")),
                ("candidate", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="comparisons", to="monitoring.modelversion")),
                ("dataset", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="monitoring.dataset")),
                ("deployment", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="comparisons", to="monitoring.deployment")),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("active", "candidate", "window_key"), name="comparison_unique_active_candidate_window")],
            },
        ),
    ]
