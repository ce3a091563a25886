"""The serving client's predict calls, kept compactly: one row per reported batch, not per call.

Loaded by monitoring/models.py (and importable from there). The rollout guards latency_p95 and error_rate sum
these rows over a stage, by version (monitoring/selectors/rollouts.py); the histogram's buckets are fixed
(monitoring/callstats.py), so summing is adding arrays.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from monitoring.models import Deployment, ModelVersion


class CallStats(models.Model):
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="+")
    # The version that served the calls; as for its batch, the active one when the client did not say.
    version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The PredictionBatch reported with, written in its transaction; null for a report of calls without rows
    # (every call failed). Not a foreign key: the retention purge deletes batches with plain SQL, chunk by chunk.
    batch_id = models.BigIntegerField(null=True, blank=True, unique=True)
    # A report without rows is idempotent by its own key (a batch's is the batch's).
    idempotency_key = models.CharField(max_length=200, blank=True, default="")
    instance = models.CharField(max_length=128, blank=True, default="")
    # The batch's newest prediction timestamp, or when a report without rows arrived: the stage window's clock.
    at = models.DateTimeField(default=timezone.now)
    calls = models.PositiveIntegerField()
    errors = models.PositiveIntegerField()
    latency_histogram = models.BinaryField(help_text="uint32 little-endian, callstats.N_BUCKETS latency counts")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["deployment", "idempotency_key"], condition=Q(batch_id__isnull=True),
                                    name="callstats_unique_report_key"),
        ]
        # The guards' read: "this version's calls over a stage".
        indexes = [models.Index(fields=["deployment", "version", "at"], name="callstats_stage_idx")]
