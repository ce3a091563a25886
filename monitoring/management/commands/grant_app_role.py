"""manage.py grant_app_role --app-url postgres://ROLE@HOST/DB [--password-file F]

Run as the database's owner, after `migrate` (docker/entrypoint.sh does both). Creates the app's login role if
it is missing and grants it what the web and worker processes need, and no more:

- SELECT, INSERT, UPDATE, DELETE on every table, except the audit log, where it may only SELECT and INSERT
  (with the triggers of migrations 0002 and 0012, which the role cannot drop: only the owner can);
- SELECT only on django_migrations: only the owner migrates;
- USAGE and SELECT on the sequences, and the same rights on tables and sequences the owner creates later.

No TRUNCATE anywhere and no DDL: the app never needs them. Safe to run again; it converges.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlparse

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from monitoring.management.commands._cli import read_file
from monitoring.models import AuditEvent

# A plain lower-case identifier, so it can be quoted without escaping.
ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class Command(BaseCommand):
    help = "Create the app's database role if need be and grant it DML, but only SELECT and INSERT on the audit log."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--app-url", required=True, help="The URL the app connects with (DATABASE_URL); its user is the role")
        parser.add_argument("--password-file", help="The role's password (first line); else the URL's, if any")

    def handle(self, *args, app_url: str, password_file: str | None, **options) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("Database roles exist on Postgres only; the embedded SQLite demo has none.")
        role = unquote(urlparse(app_url).username or "")
        if not ROLE_NAME.match(role):
            raise CommandError(f"The app URL's user {role!r} is not a plain role name (a-z, 0-9, _).")
        password = unquote(urlparse(app_url).password or "")
        if password_file:
            password = (read_file(password_file).decode("utf-8").splitlines() or [""])[0]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT current_user, current_schema(), current_database()")
            owner, schema, database = cursor.fetchone()
            if role == owner:
                raise CommandError(f"The app role must not be the owner {owner!r}: the owner can drop the audit triggers.")
            self._ensure_role(cursor, role, password)
            for statement in grants(role=role, schema=schema, database=database):
                cursor.execute(statement)
        self.stdout.write(f"Role {role!r} may use {database!r}; on {AuditEvent._meta.db_table} only SELECT and INSERT.")

    @staticmethod
    def _ensure_role(cursor, role: str, password: str) -> None:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role])
        row = cursor.fetchone()
        if row is not None and row[0]:
            raise CommandError(f"The role {role!r} is a superuser, which no grant can limit.")
        verb = "ALTER" if row is not None else "CREATE"
        if password:
            cursor.execute(f'{verb} ROLE "{role}" WITH LOGIN PASSWORD %s', [password])
        else:
            cursor.execute(f'{verb} ROLE "{role}" WITH LOGIN')


def grants(*, role: str, schema: str, database: str) -> list[str]:
    audit = AuditEvent._meta.db_table
    return [
        f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"',
        f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"',
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"',
        f'REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON "{schema}"."{audit}" FROM "{role}"',
        f'REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON "{schema}"."django_migrations" FROM "{role}"',
        f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{role}"',
        # Tables a later migration creates (as this owner) are the app's to use as well.
        f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{role}"',
        f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" GRANT USAGE, SELECT ON SEQUENCES TO "{role}"',
    ]
