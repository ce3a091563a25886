# Which rows a job trained a version on (issue 16, "retrain evidence is in-sample"): comparisons leave them out.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("monitoring", "0014_serving_periods"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelversion",
            name="training_rows",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
