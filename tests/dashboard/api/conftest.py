"""Fixtures for the API tests: a token for the tumour deployment, and another team's deployment."""

from __future__ import annotations

import pytest

from monitoring import services
from tests.conftest import CLASSES, FEATURES
from tests.workers.conftest import mlp_deployment  # noqa: F401  (a fixture: a digits MLP, which compresses)


@pytest.fixture
def token(deployment, operator) -> str:
    _, plaintext = services.token_create(deployment=deployment, name="scorer", by=operator)
    return plaintext


@pytest.fixture
def other_deployment(outsider):
    """Another team's deployment with the same schema, so only the token can tell them apart."""
    team = outsider.memberships.get().team
    return services.deployment_create(
        team=team, name="Their classifier", slug="theirs", feature_names=FEATURES, class_labels=CLASSES, by=outsider
    )
