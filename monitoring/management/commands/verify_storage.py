"""manage.py verify_storage [--json] [--quick] [--strict]: every file a row names exists and hashes to its
sha256; files no row names are listed as orphans. Exit status 1 when a named file is missing or corrupt (or,
with --strict, on any finding). Streams both the rows and the files, so memory stays flat on a large store."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from monitoring import selectors


class Command(BaseCommand):
    help = "Check the media store against the database: missing or corrupt files named by rows, and orphans."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="One JSON object per line: each finding, then a summary")
        parser.add_argument("--quick", action="store_true", help="Check that files exist, without hashing them")
        parser.add_argument("--strict", action="store_true", help="Orphans and unfinished writes fail the check too")

    def handle(self, *args, **options) -> None:
        tally = selectors.StorageTally()
        failed = 0
        for finding in selectors.storage_check(root=settings.MEDIA_ROOT, verify_hashes=not options["quick"], tally=tally):
            failed += finding.is_damage or options["strict"]
            if options["json"]:
                self.stdout.write(json.dumps({
                    "problem": finding.problem, "sha256": finding.sha256, "path": finding.path,
                    "named_by": finding.named_by, "detail": finding.detail,
                }))
            else:
                named = f" (named by {', '.join(finding.named_by)})" if finding.named_by else ""
                detail = f": {finding.detail}" if finding.detail else ""
                self.stdout.write(f"{finding.problem:<10} {finding.sha256 or '-'} {finding.path}{named}{detail}")
        summary = {
            "ok": failed == 0, "named_files": tally.named, "verified_bytes": tally.verified_bytes,
            "stored_files": tally.files, "findings": tally.findings, "hashed": not options["quick"],
        }
        if options["json"]:
            self.stdout.write(json.dumps({"summary": summary}))
        else:
            counts = ", ".join(f"{n} {problem}" for problem, n in sorted(tally.findings.items())) or "no findings"
            verdict = "OK" if failed == 0 else "FAILED"
            self.stdout.write(
                f"{verdict}: {tally.named} named file(s) checked ({tally.verified_bytes:,} bytes hashed), "
                f"{tally.files} stored file(s); {counts}."
            )
        if failed:
            self.stdout.flush()
            raise SystemExit(1)
