"""plotly.min.js straight from the installed plotly package: no CDN, and no copy in git that drifts from the
Python package's version. Only that one file: the package's data directory also holds sample datasets, templates
and a 5 MB widget bundle that no page loads, which `collectstatic` would otherwise copy and compress."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal, overload

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PACKAGE_DATA = Path(plotly.__file__).parent / "package_data"
PREFIX = "plotly"
FILENAME = "plotly.min.js"
URL_PATH = f"{PREFIX}/{FILENAME}"  # what templates name: {% static 'plotly/plotly.min.js' %}


class PlotlyFinder(BaseFinder):
    @overload
    def find(self, path: str, find_all: Literal[False] = False) -> str | None: ...
    @overload
    def find(self, path: str, find_all: Literal[True]) -> list[str]: ...
    def find(self, path: str, find_all: bool = False) -> str | list[str] | None:
        if path != URL_PATH:
            # [] rather than None, as Django's own finders answer: finders.find() counts a None as a match.
            return []
        found = str(PACKAGE_DATA / FILENAME)
        return [found] if find_all else found

    def list(self, ignore_patterns: Iterable[str] | None) -> Iterator[tuple[str, FileSystemStorage]]:
        storage = FileSystemStorage(location=PACKAGE_DATA)
        storage.prefix = PREFIX  # type: ignore[attr-defined]  # collectstatic and WhiteNoise read it
        yield FILENAME, storage
