# Each alert its own kind and the figures it was raised on (issue 16, "alerts that contradict themselves": a
# prediction shift and an accuracy drop were both labelled "Data drift").

from django.db import migrations, models

KINDS = [
    ("metric_below_threshold", "Metric below its floor"),
    ("data_drift", "Data drift"),
    ("job_failed", "Maintenance job failed"),
    ("batch_rejected", "Prediction batch rejected"),
    ("prediction_drift", "Prediction shift"),
    ("concept_drift", "Accuracy drop on labelled traffic"),
]


def relabel(apps, schema_editor):
    Alert = apps.get_model("monitoring", "Alert")
    Alert.objects.filter(dedup_key="drift:prediction").update(kind="prediction_drift")
    Alert.objects.filter(dedup_key="drift:concept").update(kind="concept_drift")


def unlabel(apps, schema_editor):
    Alert = apps.get_model("monitoring", "Alert")
    Alert.objects.filter(kind__in=["prediction_drift", "concept_drift"]).update(kind="data_drift")


class Migration(migrations.Migration):

    dependencies = [
        ("monitoring", "0015_version_training_rows"),
    ]

    operations = [
        migrations.AlterField(
            model_name="alert", name="kind", field=models.CharField(choices=KINDS, max_length=32),
        ),
        migrations.AddField(
            model_name="alert", name="figures", field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(relabel, unlabel),
    ]
