from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"

    def ready(self) -> None:
        # Register the Celery tasks in every process Django starts (web, management commands, tests), so that
        # monitoring/background.py finds them by name; a worker also autodiscovers them (dashboard/celery.py).
        # workers/tasks.py imports the heavy work (scikit-learn, skl2onnx) inside each task, so this stays cheap.
        import workers.tasks  # noqa: F401
