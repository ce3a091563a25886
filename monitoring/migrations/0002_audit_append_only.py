"""On Postgres, make the audit log append-only in the database itself, not only in the ORM."""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION watchkeeper_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION USING MESSAGE = 'monitoring_auditevent is append-only: ' || TG_OP || ' refused';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER monitoring_auditevent_append_only
    BEFORE UPDATE OR DELETE ON monitoring_auditevent
    FOR EACH ROW EXECUTE FUNCTION watchkeeper_audit_append_only();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS monitoring_auditevent_append_only ON monitoring_auditevent;
DROP FUNCTION IF EXISTS watchkeeper_audit_append_only();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
