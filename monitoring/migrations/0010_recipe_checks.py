# Recipes and models (issue 10, items 1-2) need no schema change: recipes are checked against an allow-list
# (monitoring/recipes.py) at upload and again in the worker before anything is built, and models are walked
# for external data and smoke-run in a limited process (monitoring/runtime.py, monitoring/smoke.py). A recipe
# stored before these checks is refused by the worker when a retrain loads it, so no data migration either.
# Kept as a no-op so the chain (0011 and later depend on it) stays as numbered.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("monitoring", "0009_batch_columns_in_media"),
    ]

    operations = []
