"""Datasets: upload a reference or evaluation set from the dashboard, as the API and `upload_dataset` do."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from dashboard.access import OPERATE, get_deployment_for
from dashboard.forms import DatasetUploadForm
from monitoring import services


@login_required
def dataset_new(request: HttpRequest, slug: str) -> HttpResponse:
    deployment = get_deployment_for(request.user, slug, need=OPERATE)
    form = DatasetUploadForm(request.POST or None, request.FILES or None)
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
    return render(request, "deployments/dataset_new.html", {"deployment": deployment, "form": form}, status=status)
