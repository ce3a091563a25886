"""Forms parse the dashboard's input; the services decide whether it makes sense."""

from __future__ import annotations

from django import forms

from monitoring.models import Alert, Dataset, Deployment, MaintenanceJob, ModelVersion, NotificationChannel, Team


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
    # Required by the service, which says so in words; not here, so a blank one reaches it and gets that message.
    comment = forms.CharField(required=False, max_length=2000, label="Reason")


class TagForm(forms.Form):
    tag = forms.CharField(max_length=40, label="Tag")


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


def split_names(text: str) -> list[str]:
    """Names typed one per line or separated by commas, without blanks."""
    return [name.strip() for line in text.splitlines() for name in line.split(",") if name.strip()]


class DeploymentCreateForm(forms.Form):
    name = forms.CharField(help_text="Shown on every page; the URL is made from it.")
    team = forms.ChoiceField(help_text="The team that owns it: its members see it, with the roles they hold there.")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    file = forms.FileField(
        label="ONNX model (optional)", required=False,
        help_text="Its input and classes become the deployment's schema, and it becomes the active v1.",
    )
    recipe = forms.FileField(
        label="Training recipe (optional)", required=False,
        help_text="A skops-serialised scikit-learn estimator for the model, needed to retrain it later.",
    )
    feature_names = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3, "placeholder": "age, income, tenure_months"}),
        help_text="In the order the model takes them, separated by commas or new lines. Leave empty when the model "
        "names its features.",
    )
    class_labels = forms.CharField(
        required=False, widget=forms.TextInput(attrs={"placeholder": "benign, malignant"}),
        help_text="Separated by commas. Leave empty when the model carries its classes.",
    )

    def __init__(self, *args, teams: list[Team], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].choices = [(t.slug, t.name) for t in teams]

    def clean(self) -> dict:
        data = super().clean() or {}
        data["feature_names"] = split_names(data.get("feature_names", ""))
        data["class_labels"] = split_names(data.get("class_labels", ""))
        if not data.get("file") and not (data["feature_names"] and data["class_labels"]):
            raise forms.ValidationError(
                "Upload an ONNX model to read the schema from it, or type the feature names and the class labels."
            )
        return data


class ThresholdsForm(forms.Form):
    """One optional floor per metric; the service checks the range."""

    def __init__(self, *args, metrics: tuple[str, ...], **kwargs):
        super().__init__(*args, **kwargs)
        for metric in metrics:
            self.fields[metric] = forms.FloatField(
                required=False, label=METRIC_LABELS.get(metric, metric),
                widget=forms.NumberInput(attrs={"step": "any", "placeholder": "no floor"}),
            )

    def floors(self) -> dict[str, float]:
        return {metric: value for metric, value in self.cleaned_data.items() if value is not None}


METRIC_LABELS = {
    "accuracy": "Accuracy", "f1_macro": "F1 (macro)", "roc_auc": "ROC-AUC", "precision_macro": "Precision (macro)",
    "recall_macro": "Recall (macro)", "precision_weighted": "Precision (weighted)",
    "recall_weighted": "Recall (weighted)", "f1_weighted": "F1 (weighted)",
}

DRIFT_TESTS = [
    ("", "Chosen per feature (KS or chi-square by sample size and kind)"),
    ("ks", "Kolmogorov–Smirnov (numeric; p-value)"),
    ("chisquare", "Chi-square (categorical; p-value)"),
    ("wasserstein", "Wasserstein distance (numeric)"),
    ("psi", "Population stability index"),
    ("jensenshannon", "Jensen–Shannon distance"),
]


class DriftSettingsForm(forms.Form):
    """The common drift settings as fields; per-feature rules as JSON. DriftConfig (via the service) decides."""

    p_value = forms.FloatField(
        required=False, label="Significance (p-value)", widget=forms.NumberInput(attrs={"step": "any"}),
        help_text="Family-wise, for the p-value tests (KS, chi-square).",
    )
    correction = forms.ChoiceField(
        choices=[("bonferroni", "Bonferroni"), ("bh", "Benjamini–Hochberg"), ("none", "None")],
        label="Multiple-testing correction",
    )
    drift_share = forms.FloatField(
        required=False, label="Dataset drift when this share of features drifts",
        widget=forms.NumberInput(attrs={"step": "any"}), help_text="In (0, 1]; 0.5 by default.",
    )
    test = forms.ChoiceField(choices=DRIFT_TESTS, required=False, label="Test for every feature")
    threshold = forms.FloatField(
        required=False, label="Threshold", widget=forms.NumberInput(attrs={"step": "any"}),
        help_text="For a distance test, the distance at or above which a feature drifts (PSI 0.2, others 0.1 by "
        "default); for a p-value test, the p-value before correction.",
    )
    multivariate_auc = forms.FloatField(
        required=False, label="Multivariate drift at ROC-AUC", widget=forms.NumberInput(attrs={"step": "any"}),
        help_text="A domain classifier telling reference from current rows apart at or above this; 0.55 by default.",
    )
    window_rows = forms.IntegerField(
        required=False, label="Window: the newest N rows", help_text="Empty: every row of the time window.",
    )
    interval_minutes = forms.IntegerField(
        required=False, label="Check every N minutes", help_text="Empty: on every scheduled check.",
    )
    features = forms.JSONField(
        required=False, label="Per-feature rules (JSON)",
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": '{"income": {"test": "psi", "threshold": 0.25}}'}),
        help_text="Feature name → kind (numeric, categorical), test and threshold, over the settings above.",
    )

    def config(self) -> dict:
        """The drift_config JSON: only what was given, so the defaults stay the defaults."""
        data = self.cleaned_data
        config: dict = {key: data[key] for key in ("p_value", "drift_share", "threshold", "multivariate_auc")
                        if data.get(key) is not None}
        if data.get("correction") and data["correction"] != "bonferroni":
            config["correction"] = data["correction"]
        if data.get("test"):
            config["test"] = data["test"]
        if data.get("features"):
            config["features"] = data["features"]
        return config

    @classmethod
    def initial_for(cls, *, config: dict, window_rows: int | None, interval_minutes: int | None) -> dict:
        initial = {key: config.get(key) for key in ("p_value", "drift_share", "threshold", "multivariate_auc", "test")}
        initial |= {"correction": config.get("correction", "bonferroni"), "features": config.get("features") or None}
        return initial | {"window_rows": window_rows, "interval_minutes": interval_minutes}


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


# What each rollout guard measures, as the settings page explains it (docs/rollout.md has the tests).
GUARD_LABELS = {
    "class_shift": ("Class shift", "distance between the two versions' predicted-class shares (0–1)"),
    "score_shift": ("Score shift", "KS distance between their confidence distributions (0–1)"),
    "estimated_accuracy": ("Estimated accuracy drop", "how much lower the candidate's CBPE-estimated accuracy is"),
    "labelled_accuracy": ("Labelled accuracy drop", "how much lower its accuracy is on rows whose labels arrived"),
}
# Guards with no significance test (an estimate against a margin): their alpha is not used, so not offered.
GUARDS_WITHOUT_TEST = frozenset({"estimated_accuracy"})


class RolloutPlanInput:
    """The rollout plan as the settings page and the roll-out dialog post it: stage rows (share in per cent,
    minimum minutes, minimum predictions; blank rows skipped) and, on the settings page, the guards' settings
    (blank keeps the default), the watch period and auto-rollback. The service decides what makes sense; this only
    turns text into numbers and says, in the page's units, what to type instead."""

    def __init__(self, data, *, guard_names: tuple[str, ...] = ()) -> None:
        self.data = data
        self.guard_names = guard_names
        self.errors: list[str] = []

    def _number(self, text: str, *, what: str, whole: bool) -> float | int | None:
        try:
            return int(text) if whole else float(text)
        except ValueError:
            kind = "a whole number" if whole else "a number"
            self.errors.append(f"{what} must be {kind} (got {text!r}).")
            return None

    def stages(self) -> list[dict]:
        rows = zip(self.data.getlist("stage_share"), self.data.getlist("stage_minutes"),
                   self.data.getlist("stage_predictions"), strict=False)
        stages = []
        for i, (share, minutes, predictions) in enumerate(rows, start=1):
            share, minutes, predictions = share.strip().rstrip("%").strip(), minutes.strip(), predictions.strip()
            if not (share or minutes or predictions):
                continue
            if not share:
                self.errors.append(f"Stage {i} needs a share: the per cent of instances that serve the candidate.")
                continue
            percent = self._number(share, what=f"Stage {i}'s share", whole=False)
            if percent is not None and not 0 < percent <= 100:
                self.errors.append(f"Stage {i}'s share is a per cent of instances, above 0 and at most 100 (got {percent:g}).")
                percent = None
            stage = {
                "share": None if percent is None else round(percent / 100, 6),
                "min_minutes": self._number(minutes or "0", what=f"Stage {i}'s minimum minutes", whole=True),
                "min_predictions": self._number(predictions or "0", what=f"Stage {i}'s minimum predictions", whole=True),
            }
            stages.append(stage)
        if not stages and not self.errors:
            self.errors.append("Give at least one stage; a single stage of 100 % promotes at once.")
        last = stages[-1]["share"] if stages and not self.errors else None
        if last is not None and last != 1.0:
            self.errors.append(f"The last stage must be 100 % (it makes the candidate active); add a row of 100 after "
                               f"{last * 100:g} %.")
        return stages

    def guards(self) -> dict[str, dict]:
        overrides: dict[str, dict] = {}
        for name in self.guard_names:
            label = GUARD_LABELS.get(name, (name,))[0]
            for setting, whole in (("threshold", False), ("min_rows", True), ("alpha", False)):
                if setting == "alpha" and name in GUARDS_WITHOUT_TEST:
                    continue
                text = self.data.get(f"guard_{name}_{setting}", "").strip()
                if text:
                    value = self._number(text, what=f"{label}'s {setting.replace('_', ' ')}", whole=whole)
                    if value is not None:
                        overrides.setdefault(name, {})[setting] = value
        return overrides

    def watch_minutes(self) -> int:
        value = self._number(self.data.get("watch_minutes", "").strip() or "0", what="The watch period", whole=True)
        return int(value or 0)

    def auto_rollback(self) -> bool:
        return self.data.get("auto_rollback") == "on"
