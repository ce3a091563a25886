"""Datasets: upload a reference or evaluation set from the dashboard, as the API and `upload_dataset` do."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from dashboard.access import OPERATE, get_deployment_for
from dashboard.forms import DatasetUploadForm
from monitoring import services
from monitoring.models import Dataset
from monitoring.tabular import LABEL_COLUMN


@login_required
def dataset_new(request: HttpRequest, slug: str) -> HttpResponse:
    deployment = get_deployment_for(request.user, slug, need=OPERATE)
    kind = request.GET.get("kind", "")
    initial = {"kind": kind} if kind in Dataset.Kind.values else {}
    form = DatasetUploadForm(request.POST or None, request.FILES or None, initial=initial)
    status = 200
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            dataset = services.dataset_upload(
                deployment=deployment,
                kind=form.cleaned_data["kind"],
                data=upload.read(),
                filename=upload.name or "",
                name=form.cleaned_data["name"],
                by=request.user,
            )
        except services.ServiceError as exc:
            form.add_error(None, exc.message)
            status = exc.status
        else:
            messages.success(
                request, f"{dataset.name} ({dataset.n_rows:,} rows) is now the {dataset.get_kind_display().lower()} dataset."
            )
            return redirect("deployment", slug)
    elif request.method == "POST":
        status = 400
    context = {
        "deployment": deployment,
        "form": form,
        "reference": deployment.reference_dataset,
        "evaluation": deployment.evaluation_dataset,
        # The first line of a file that fits: what a user copies into their export.
        "header": ",".join([*deployment.feature_names, LABEL_COLUMN]),
    }
    return render(request, "deployments/dataset_new.html", context, status=status)
