from django.contrib.auth import views as auth_views
from django.urls import path

from dashboard.logins import LimitedPasswordChangeView
from dashboard.views import alerting, alerts, datasets, deployments, jobs, overview, rollouts, setup, tokens, versions

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", LimitedPasswordChangeView.as_view(), name="password_change"),
    path("password/done", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("", overview.overview, name="overview"),
    path("alerts", alerts.alert_list, name="alerts"),
    path("alerts/<int:alert_id>/status", alerts.alert_set_status, name="alert-status"),
    path("deployments/new", setup.deployment_new, name="deployment-new"),
    path("alerts/<int:alert_id>/", alerting.alert_detail, name="alert-detail"),
    path("ack/<str:ack>/", alerting.alert_ack, name="alert-ack"),
    path("t/<slug:team>/alerting/", alerting.team_alerting, name="team-alerting"),
    path("t/<slug:team>/alerting/channels", alerting.channel_create, name="channel-create"),
    path("t/<slug:team>/alerting/channels/<int:channel_id>/", alerting.channel_detail, name="channel-detail"),
    path("t/<slug:team>/alerting/channels/<int:channel_id>/edit", alerting.channel_update, name="channel-update"),
    path("t/<slug:team>/alerting/channels/<int:channel_id>/delete", alerting.channel_delete, name="channel-delete"),
    path("t/<slug:team>/alerting/channels/<int:channel_id>/test", alerting.channel_test, name="channel-test"),
    path("t/<slug:team>/alerting/rules", alerting.rule_create, name="rule-create"),
    path("t/<slug:team>/alerting/rules/<int:rule_id>/delete", alerting.rule_delete, name="rule-delete"),
    path("t/<slug:team>/alerting/silences", alerting.silence_create, name="silence-create"),
    path("t/<slug:team>/alerting/silences/<int:silence_id>/expire", alerting.silence_expire, name="silence-expire"),
    path("d/<slug:slug>/", deployments.deployment_detail, name="deployment"),
    path("d/<slug:slug>/settings", setup.deployment_settings, name="deployment-settings"),
    path("d/<slug:slug>/settings/floors", setup.deployment_thresholds, name="deployment-thresholds"),
    path("d/<slug:slug>/settings/drift", setup.deployment_drift, name="deployment-drift"),
    path("d/<slug:slug>/audit", deployments.audit_log, name="audit"),
    path("d/<slug:slug>/drift/<int:report_id>/", deployments.drift_report, name="drift-report"),
    path("d/<slug:slug>/versions/new", versions.version_new, name="version-new"),
    path("d/<slug:slug>/datasets/new", datasets.dataset_new, name="dataset-new"),
    path("d/<slug:slug>/versions/<int:number>/approve", versions.version_approve, name="version-approve"),
    path("d/<slug:slug>/versions/<int:number>/reject", versions.version_reject, name="version-reject"),
    path("d/<slug:slug>/versions/<int:number>/compare", versions.version_compare, name="version-compare"),
    path("d/<slug:slug>/rollback", versions.deployment_rollback, name="rollback"),
    path("d/<slug:slug>/versions/<int:number>/rollout", rollouts.rollout_start, name="rollout-start"),
    *[path(f"d/<slug:slug>/rollout/{action}", rollouts.rollout_control, {"action": action}, name=f"rollout-{action}")
      for action in rollouts.CONTROLS],
    path("d/<slug:slug>/jobs", jobs.job_queue, name="job-queue"),
    path("jobs/<int:job_id>/cancel", jobs.job_cancel, name="job-cancel"),
    path("jobs/<int:job_id>/progress", jobs.job_progress, name="job-progress"),
    path("d/<slug:slug>/send-data", tokens.token_list, name="tokens"),
    path("d/<slug:slug>/tokens", tokens.token_create, name="token-create"),
    path("d/<slug:slug>/tokens/<int:token_id>/revoke", tokens.token_revoke, name="token-revoke"),
]
