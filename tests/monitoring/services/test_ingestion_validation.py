"""services/ingestion.py: rows that are refused, with a message per row, and nothing stored."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitoring import services
from monitoring.models import Prediction, PredictionBatch
from monitoring.services import TooLarge, ValidationFailed
from tests.monitoring.services.ingestion_helpers import (
    _bad_probabilities,
    _bad_timestamp,
    _bool_feature,
    _duplicate_id,
    _huge_feature,
    _missing_feature,
    _nan_feature,
    _short_list,
    _text_feature,
    _unknown_label,
    prediction_rows,
    window,
)

# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("spoil", "field", "message"),
    [
        (_missing_feature, "features", "missing feature(s): f7"),
        (_nan_feature, "features.f3", "must be finite"),
        (_text_feature, "features.f2", "must be a number, got str"),
        (_bool_feature, "features.f2", "must be a number, got bool"),
        (_short_list, "features", "expected 30 values, got 29"),
        (_unknown_label, "predicted_label", "must be one of ['0', '1']"),
        (_bad_timestamp, "timestamp", "must be an ISO 8601 date-time"),
        (_duplicate_id, "id", "duplicate id 'req-1' (also row 1)"),
        (_bad_probabilities, "probabilities", "must be 2 finite numbers in [0, 1]"),
        (_huge_feature, "features.f0", "beyond the float32 range"),
    ],
    ids=["missing-feature", "nan", "text", "bool", "short-list", "unknown-label", "timestamp", "duplicate-id",
         "probabilities", "float32-overflow"],
)
def test_a_bad_row_rejects_the_whole_batch_naming_row_and_field(deployment, spoil, field, message):
    rows = prediction_rows(5)
    spoil(rows[3])

    with pytest.raises(ValidationFailed) as failure:
        services.predictions_ingest(deployment=deployment, rows=rows)

    assert "nothing was stored" in failure.value.message
    [error] = failure.value.errors
    assert (error["row"], error["field"]) == (3, field)
    assert message in error["message"]
    assert not Prediction.objects.exists()
    assert not PredictionBatch.objects.exists()


def test_a_deployment_that_allows_nan_stores_it(deployment):
    deployment.allow_non_finite = True
    deployment.save()
    rows = prediction_rows(3, as_list=True)
    rows[1]["features"][4] = math.nan
    rows[2]["features"][0] = math.inf

    services.predictions_ingest(deployment=deployment, rows=rows)

    X = window(deployment).X
    assert np.isnan(X[1, 4]) and np.isinf(X[2, 0])
    assert np.isfinite(X[0]).all()


def test_rows_with_and_without_probabilities_mix(deployment):
    rows = prediction_rows(3)
    rows[1]["probabilities"] = None

    services.predictions_ingest(deployment=deployment, rows=rows)

    P = window(deployment).probabilities
    assert np.isnan(P[1]).all()
    assert np.allclose(P[[0, 2]], [[0.2, 0.8], [0.2, 0.8]])


def test_a_batch_over_the_row_limit_is_too_large(deployment, settings):
    settings.MAX_PREDICTION_BATCH = 4

    with pytest.raises(TooLarge, match="The batch has 5 predictions; the limit is 4"):
        services.predictions_ingest(deployment=deployment, rows=prediction_rows(5))

    assert not PredictionBatch.objects.exists()
