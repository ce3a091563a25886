"""Columnar prediction storage (README "Ingestion and storage").

Existing per-row predictions are moved into PredictionBatch blocks of up to 10,000 rows, in
timestamp order, before their JSON columns are dropped, so an upgrade keeps every stored row.
"""

import django.db.models.deletion
import django.utils.timezone
import numpy as np
from django.db import migrations, models

CHUNK = 10_000  # rows per converted block: the size of the largest JSON batch the old API accepted


def rows_to_batches(apps, schema_editor):
    Deployment = apps.get_model("monitoring", "Deployment")
    Prediction = apps.get_model("monitoring", "Prediction")
    PredictionBatch = apps.get_model("monitoring", "PredictionBatch")
    epoch = np.datetime64("1970-01-01T00:00:00", "us")
    for deployment in Deployment.objects.all():
        classes = [str(c) for c in deployment.class_labels]
        rows = Prediction.objects.filter(deployment=deployment).order_by("timestamp", "pk")
        pks = list(rows.values_list("pk", flat=True))
        for start in range(0, len(pks), CHUNK):
            chunk = list(
                Prediction.objects.filter(pk__in=pks[start : start + CHUNK]).order_by("timestamp", "pk").values_list(
                    "pk", "request_id", "timestamp", "features", "predicted_label", "probabilities", "label",
                    "received_at", "version_id",
                )
            )
            t = np.array([(np.datetime64(r[2].replace(tzinfo=None), "us") - epoch).astype(np.int64) for r in chunk])
            X = np.array([r[3] for r in chunk], dtype=np.float32).reshape(len(chunk), -1)
            predicted = np.array([classes.index(r[4]) if r[4] in classes else 0 for r in chunk], dtype="<i2")
            has_p = any(r[5] is not None for r in chunk)
            P = np.full((len(chunk), len(classes)), np.nan, dtype="<f4")
            for i, r in enumerate(chunk):
                if r[5] is not None and len(r[5]) == len(classes):
                    P[i] = r[5]
            batch = PredictionBatch.objects.create(
                deployment=deployment, version_id=chunk[-1][8], idempotency_key=f"migrated:{chunk[0][0]}",
                source="api", n_rows=len(chunk), n_features=X.shape[1],
                t_min=chunk[0][2], t_max=chunk[-1][2], timestamps_us=t.astype("<i8").tobytes(),
                features=X.astype("<f4").tobytes(), predicted=predicted.tobytes(),
                probabilities=P.tobytes() if has_p else None,
                request_ids="\n".join(r[1] for r in chunk).encode(),
                result={"received": len(chunk), "created": len(chunk)}, received_at=chunk[-1][7],
            )
            for i, r in enumerate(chunk):
                Prediction.objects.filter(pk=r[0]).update(
                    batch=batch, row=i, label_index=classes.index(r[6]) if r[6] in classes else None
                )


def store_blocks_uncompressed(apps, schema_editor):
    # The blocks are float32 noise to pglz: compressing them costs CPU on every write and saves nothing.
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for column in ("timestamps_us", "features", "predicted", "probabilities", "request_ids"):
            cursor.execute(f"ALTER TABLE monitoring_predictionbatch ALTER COLUMN {column} SET STORAGE EXTERNAL")


class Migration(migrations.Migration):

    dependencies = [
        ('monitoring', '0003_drift'),
    ]

    operations = [
        migrations.CreateModel(
            name='PredictionBatch',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('idempotency_key', models.CharField(max_length=200)),
                ('source', models.CharField(choices=[('api', 'JSON API'), ('upload', 'File upload')], default='api', max_length=16)),
                ('n_rows', models.PositiveIntegerField()),
                ('n_features', models.PositiveIntegerField()),
                ('t_min', models.DateTimeField()),
                ('t_max', models.DateTimeField()),
                ('timestamps_us', models.BinaryField(help_text='int64 microseconds since the Unix epoch, UTC, one per row')),
                ('features', models.BinaryField(help_text='float32, n_rows × n_features, row-major')),
                ('predicted', models.BinaryField(help_text='int16 index into deployment.class_labels, one per row')),
                ('probabilities', models.BinaryField(help_text='float32, n_rows × n_classes; NaN where a row had none', null=True)),
                ('request_ids', models.BinaryField(help_text='UTF-8 request ids joined by newlines')),
                ('result', models.JSONField(default=dict)),
                ('received_at', models.DateTimeField(default=django.utils.timezone.now)),
            ],
        ),
        migrations.AddField(
            model_name='deployment',
            name='allow_non_finite',
            field=models.BooleanField(default=False, help_text='Accept NaN and infinite feature values in production traffic'),
        ),
        migrations.AddField(
            model_name='prediction',
            name='label_index',
            field=models.SmallIntegerField(blank=True, help_text='The true class: index into class_labels', null=True),
        ),
        migrations.AddField(
            model_name='prediction',
            name='row',
            field=models.PositiveIntegerField(default=0, help_text="Offset of this prediction in its batch's columns"),
        ),
        migrations.AddField(
            model_name='predictionbatch',
            name='deployment',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='prediction_batches', to='monitoring.deployment'),
        ),
        migrations.AddField(
            model_name='predictionbatch',
            name='version',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='monitoring.modelversion'),
        ),
        migrations.AddField(
            model_name='prediction',
            name='batch',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.CASCADE, related_name='rows', to='monitoring.predictionbatch'),
        ),
        migrations.RunPython(rows_to_batches, migrations.RunPython.noop),
        migrations.RunPython(store_blocks_uncompressed, migrations.RunPython.noop),
        migrations.RemoveIndex(
            model_name='prediction',
            name='prediction_window_idx',
        ),
        migrations.RemoveField(
            model_name='prediction',
            name='features',
        ),
        migrations.RemoveField(
            model_name='prediction',
            name='label',
        ),
        migrations.RemoveField(
            model_name='prediction',
            name='predicted_label',
        ),
        migrations.RemoveField(
            model_name='prediction',
            name='probabilities',
        ),
        migrations.RemoveField(
            model_name='prediction',
            name='received_at',
        ),
        migrations.RemoveField(
            model_name='prediction',
            name='version',
        ),
        migrations.AlterField(
            model_name='prediction',
            name='batch',
            field=models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.CASCADE, related_name='rows', to='monitoring.predictionbatch'),
        ),
        migrations.AlterField(
            model_name='prediction',
            name='deployment',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='predictions', to='monitoring.deployment'),
        ),
        migrations.AlterField(
            model_name='prediction',
            name='row',
            field=models.PositiveIntegerField(help_text="Offset of this prediction in its batch's columns"),
        ),
        migrations.AddIndex(
            model_name='prediction',
            index=models.Index(condition=models.Q(('label_index__isnull', False)), fields=['deployment', 'timestamp'], name='prediction_labelled_idx'),
        ),
        migrations.AddIndex(
            model_name='predictionbatch',
            index=models.Index(fields=['deployment', 't_min', 't_max'], name='batch_window_idx'),
        ),
        migrations.AddConstraint(
            model_name='predictionbatch',
            constraint=models.UniqueConstraint(fields=('deployment', 'idempotency_key'), name='batch_unique_idempotency_key'),
        ),
    ]
