"""Forms parse the dashboard's input; the services decide whether it makes sense."""

from __future__ import annotations

from django import forms

from monitoring.models import Alert, Dataset, MaintenanceJob, ModelVersion


class VersionUploadForm(forms.Form):
    file = forms.FileField(label="ONNX model", help_text="A classifier exported to ONNX (.onnx).")
    recipe = forms.FileField(
        label="Training recipe (optional)",
        required=False,
        help_text="A skops-serialised scikit-learn estimator, needed to retrain this version later.",
    )
    notes = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 3}))


class DatasetUploadForm(forms.Form):
    file = forms.FileField(
        label="Dataset file",
        help_text="CSV with a header row, or Parquet: a column for every feature, in any order, and a label column "
        "for an evaluation set.",
    )
    kind = forms.ChoiceField(choices=Dataset.Kind.choices, initial=Dataset.Kind.REFERENCE)
    # No max_length here: the service owns the rule, and says it.
    name = forms.CharField(required=False, help_text="Defaults to the file's name.")


class DecisionForm(forms.Form):
    comment = forms.CharField(required=False, max_length=2000)


class JobForm(forms.Form):
    version = forms.TypedChoiceField(coerce=int, label="Source version")
    kind = forms.ChoiceField(choices=MaintenanceJob.Kind.choices, label="Job")

    def __init__(self, *args, versions: list[ModelVersion], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].choices = [(v.number, f"v{v.number} ({v.get_status_display().lower()})") for v in versions]


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, initial="ingestion")


class AlertStatusForm(forms.Form):
    status = forms.ChoiceField(choices=[(Alert.Status.ACKNOWLEDGED, "Acknowledge"), (Alert.Status.RESOLVED, "Resolve")])
