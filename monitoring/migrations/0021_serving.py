# Issue 13, serving: each version's Ed25519 signature and its key id, the instances that poll for what to serve,
# and shadow replays of candidates over recent production inputs.
# Versions that exist already are signed by `manage.py sign_versions` (run by `entrypoint.sh migrate`): a
# migration has no business reading the private key.

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('monitoring', '0017_alert_delivery'),
    ]

    operations = [
        migrations.AddField(
            model_name='modelversion',
            name='signature',
            field=models.CharField(blank=True, default='', max_length=128),
        ),
        migrations.AddField(
            model_name='modelversion',
            name='signing_key_id',
            field=models.CharField(blank=True, default='', max_length=16),
        ),
        migrations.CreateModel(
            name='ServingInstance',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('instance_id', models.CharField(max_length=200)),
                ('version_reported', models.PositiveIntegerField(blank=True, null=True)),
                ('version_told', models.PositiveIntegerField(blank=True, null=True)),
                ('first_seen', models.DateTimeField(default=django.utils.timezone.now)),
                ('last_seen', models.DateTimeField(default=django.utils.timezone.now)),
                ('deployment', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='serving_instances', to='monitoring.deployment')),
            ],
            options={
                'ordering': ['instance_id'],
                'constraints': [models.UniqueConstraint(fields=('deployment', 'instance_id'), name='serving_instance_unique_id')],
            },
        ),
        migrations.CreateModel(
            name='ShadowReplay',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed')], default='queued', max_length=16)),
                ('window_start', models.DateTimeField(blank=True, null=True)),
                ('window_end', models.DateTimeField(blank=True, null=True)),
                ('n_rows', models.PositiveIntegerField(default=0)),
                ('row_cap', models.PositiveIntegerField(default=0)),
                ('results', models.JSONField(blank=True, default=dict)),
                ('error', models.TextField(blank=True)),
                ('queued_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('computed_at', models.DateTimeField(blank=True, null=True)),
                ('active', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='monitoring.modelversion')),
                ('candidate', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='shadow_replay', to='monitoring.modelversion')),
                ('deployment', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='shadow_replays', to='monitoring.deployment')),
            ],
        ),
    ]
