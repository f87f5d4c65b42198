#!/usr/bin/env python
"""Django's command-line utility for the example site; from the repository root,
``python examples/django_site/manage.py check`` or ``... runserver``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    # The repository root, so that ``examples`` and ``tenant_trace`` import.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_site.project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
