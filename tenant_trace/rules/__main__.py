"""``python -m tenant_trace.rules alerts|dashboard``."""

from tenant_trace.rules import main

raise SystemExit(main())
