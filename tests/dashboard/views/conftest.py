"""Fixtures for the page tests: a candidate version beside the active one."""

from __future__ import annotations

import pytest

from monitoring import services
from monitoring.models import (
    ModelVersion,
)
from tests.conftest import trained_model


@pytest.fixture
def candidate(deployment, operator) -> ModelVersion:
    onnx_bytes, recipe = trained_model(C=0.05)
    return services.version_register(deployment=deployment, data=onnx_bytes, recipe=recipe, by=operator)
