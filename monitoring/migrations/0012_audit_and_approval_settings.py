# The audit log refuses TRUNCATE too (issue 10, item 7), and a deployment can require a second approver (item 9).

from django.db import migrations, models

# 0002's trigger is per row, and TRUNCATE fires no row trigger: this one is per statement.
FORWARD = """
CREATE OR REPLACE FUNCTION watchkeeper_audit_no_truncate() RETURNS trigger AS $$
BEGIN
    -- Except in a database its owner marked disposable, as tests/conftest.py marks the test databases, which
    -- Django empties with TRUNCATE between tests: ALTER DATABASE ... SET watchkeeper.audit_truncate = 'allow'.
    -- Read from the catalog rather than current_setting(), which any session could SET for itself.
    IF EXISTS (
        SELECT 1 FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
        WHERE d.datname = current_database() AND s.setrole = 0
          AND 'watchkeeper.audit_truncate=allow' = ANY (s.setconfig)
    ) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION USING MESSAGE = 'monitoring_auditevent is append-only: TRUNCATE refused';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER monitoring_auditevent_no_truncate
    BEFORE TRUNCATE ON monitoring_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION watchkeeper_audit_no_truncate();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS monitoring_auditevent_no_truncate ON monitoring_auditevent;
DROP FUNCTION IF EXISTS watchkeeper_audit_no_truncate();
"""


def forward(apps, schema_editor):
    # SQLite (the embedded demo) has no TRUNCATE and no triggers of this kind, as in 0002.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):

    dependencies = [
        ("monitoring", "0011_stored_comparisons"),
    ]

    operations = [
        migrations.RunPython(forward, backward),
        # On for existing deployments too: the rule is the fix for "an approver ships their own upload", and a
        # team with one approver sees a refusal that says how to turn it off.
        migrations.AddField(
            model_name="deployment",
            name="require_distinct_approver",
            field=models.BooleanField(
                default=True,
                help_text="A candidate must be approved by someone other than who uploaded it or queued the job that made it",
            ),
        ),
    ]
