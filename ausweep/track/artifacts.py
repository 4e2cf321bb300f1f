"""Small artifact formats the studies hand to the tracker (a trial's ``"artifacts"`` texts)."""

from __future__ import annotations

import csv
import io
from typing import Any, Sequence


def rows_to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV text of a list of dicts (columns from the first row); empty text for no rows."""
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
