"""manage.py create_user <username> --team T --role viewer|operator|approver [--password-file F | --prompt]"""

from __future__ import annotations

import getpass
import secrets

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from monitoring import services
from monitoring.management.commands._cli import read_file, service_errors
from monitoring.models import Role


class Command(BaseCommand):
    help = "Create a dashboard user in a team with a role. Without --password-file a random password is printed once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--team", required=True, help="Team name or slug; created if it does not exist")
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument("--email", default="")
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--password-file", help="Read the password from this file (first line), e.g. a Docker secret")
        source.add_argument("--prompt", action="store_true", help="Ask for the password (twice) on the terminal")

    def handle(self, *args, **options) -> None:
        generated = not options["password_file"] and not options["prompt"]
        if options["prompt"]:
            password = self._ask()
        elif generated:
            password = secrets.token_urlsafe(18)  # 144 bits; the person changes it after logging in
        else:
            # The first line only: secret files usually end with a newline that is not part of the password.
            password = (read_file(options["password_file"]).decode("utf-8", "replace").splitlines() or [""])[0]
        with service_errors(), transaction.atomic():  # a refused user leaves no new team behind
            team = services.team_get_or_create(name=options["team"])
            user = services.user_create(
                username=options["username"], password=password, team=team, role=options["role"], email=options["email"]
            )
        self.stdout.write(f"Created {user.get_username()!r}, {options['role']} in team {team.slug!r}.")
        if generated:
            self.stdout.write(f"Password (shown once): {password}")

    @staticmethod
    def _ask() -> str:
        # getpass reads the terminal, not stdin, and echoes nothing; `docker compose run` gives it a terminal.
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password (again): ") != password:
            raise CommandError("The two passwords differ; nothing was created.")
        return password
