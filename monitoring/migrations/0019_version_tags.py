from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0018_alert_kinds_digest")]

    operations = [
        migrations.AddField(model_name="modelversion", name="tags", field=models.JSONField(blank=True, default=list)),
    ]
