from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0017_alert_delivery")]

    operations = [
        migrations.AddField(model_name="modelversion", name="tags", field=models.JSONField(blank=True, default=list)),
    ]
