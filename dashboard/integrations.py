"""Optional error reporting (Sentry) and tracing (OpenTelemetry), each behind its flag (SENTRY_ENABLED,
OTEL_ENABLED), off by default. Their packages are an extra (pip install ".[observability]") and are imported
only here, only when enabled: an install without them runs as before.

- Sentry: settings.py calls sentry_init at start, in every process (web and workers): Django and Celery errors
  are reported with the request or task. No request bodies and no personal data are sent (send_default_pii off,
  max_request_body_size "never"): a prediction's features never leave.
- OpenTelemetry: spans for each Django request (dashboard/wsgi.py) and each Celery task (dashboard/celery.py,
  in each worker process), exported over OTLP to OTEL_EXPORTER_OTLP_ENDPOINT as the SDK reads it.
"""

from __future__ import annotations

from typing import Any


def sentry_init(*, dsn: str, traces_sample_rate: float) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        traces_sample_rate=traces_sample_rate,
        send_default_pii=False,
        max_request_body_size="never",
    )


def _tracer_provider(service_name: str) -> Any:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def otel_instrument_django() -> None:
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    _tracer_provider("watchkeeper-web")
    DjangoInstrumentor().instrument()


def otel_instrument_celery() -> None:
    """In each worker process (worker_process_init): the SDK's exporter thread does not survive a fork."""
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    _tracer_provider("watchkeeper-worker")
    CeleryInstrumentor().instrument()
