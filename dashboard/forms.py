"""Forms parse the dashboard's input; the services decide whether it makes sense."""

from __future__ import annotations

from django import forms

from monitoring.models import Alert, Dataset, Deployment, MaintenanceJob, ModelVersion, NotificationChannel


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


class ChannelForm(forms.Form):
    kind = forms.ChoiceField(choices=NotificationChannel.Kind.choices)
    name = forms.CharField(max_length=100)
    target = forms.CharField(
        max_length=2000, required=False,
        help_text="Email: addresses, comma-separated. Webhook or Slack: the URL. Apprise: its URL (discord://…).",
    )
    enabled = forms.BooleanField(required=False, initial=True)


class RuleForm(forms.Form):
    name = forms.CharField(max_length=100)
    deployment = forms.ModelChoiceField(queryset=Deployment.objects.none(), required=False, empty_label="All deployments")
    min_severity = forms.ChoiceField(choices=Alert.Severity.choices, initial=Alert.Severity.WARNING)
    kinds = forms.MultipleChoiceField(choices=Alert.Kind.choices, required=False, help_text="None: every kind.")
    channels = forms.ModelMultipleChoiceField(queryset=NotificationChannel.objects.none())
    group_wait_s = forms.IntegerField(min_value=0, initial=30, label="Group wait (s)")
    group_interval_s = forms.IntegerField(min_value=0, initial=300, label="Group interval (s)")
    repeat_interval_s = forms.IntegerField(min_value=60, initial=4 * 3600, label="Repeat interval (s)")

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["deployment"].queryset = Deployment.objects.filter(team=team)
        self.fields["channels"].queryset = NotificationChannel.objects.filter(team=team)


class SilenceForm(forms.Form):
    deployment = forms.ModelChoiceField(queryset=Deployment.objects.none(), required=False, empty_label="Any deployment")
    kind = forms.ChoiceField(choices=[("", "Any kind"), *Alert.Kind.choices], required=False)
    severity = forms.ChoiceField(choices=[("", "Any severity"), *Alert.Severity.choices], required=False)
    hours = forms.IntegerField(min_value=1, max_value=24 * 90, initial=2, label="For (hours)")
    comment = forms.CharField(max_length=2000)

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["deployment"].queryset = Deployment.objects.filter(team=team)
