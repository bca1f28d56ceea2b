"""How tests/data/v6_store.sqlite was made: 150 events recorded by SQLiteStore at schema v6 (main at ae6a865).

v6 kept the rollups inside each record() transaction (44-odd upserts per event); the file is what that code
wrote, rollups included, so the tests can check that v7 (the roller's watermark) takes it over as it is.
Run with the v6 code first on the path::

    PYTHONPATH=/path/to/v6/checkout python tests/data/make_v6_store.py tests/data/v6_store.sqlite
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone

from mailtrack.events import TrackingEvent
from mailtrack.storage.sqlite import SQLiteStore

DAY0 = datetime(2024, 3, 1, tzinfo=timezone.utc)


def events() -> list[TrackingEvent]:
    """The 150 events: 4 days, 5 messages, 3 campaigns and a numeric metadata value, 3 tag sets, two accounts."""
    made = []
    for i in range(150):
        kind = ["opened", "clicked", "opened", "unsubscribed", "clicked", "opened"][i % 6]
        made.append(TrackingEvent(
            event_type=kind, message_id=f"<m{i % 5}@example.com>", recipient=[f"r{i % 7}@x", None][i % 9 == 0],
            url=f"https://e.com/{i % 3}" if kind == "clicked" else None, link_index=i % 3 if kind == "clicked" else None,
            timestamp=DAY0 + timedelta(hours=0.7 * i), metadata={"campaign": ["spring", "fall", "winter"][i % 3],
                                                                 "n": i % 2, **({"variant": "b"} if i % 4 == 0 else {})},
            tags=(("news",), ("news", "promo"), ())[i % 3], account=None if i % 5 else "sub1"))
    return made


if __name__ == "__main__":
    store = SQLiteStore(sys.argv[1])
    assert store.version == 6, store.version
    for event in events():
        store.record(event)
    store.close()
