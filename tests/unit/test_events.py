"""TrackingEvent and EventType: the one normalized event shape."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

import mailtrack
from mailtrack.events import EventType, TrackingEvent

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_an_event_reads_like_a_django_anymail_event() -> None:
    clicked = TrackingEvent("clicked", T0, "m", "r@x", url="https://x.example/a", link_index=0)
    assert clicked.click_url == clicked.url == "https://x.example/a"
    assert TrackingEvent("opened", T0, "m", "r@x").click_url is None


def test_event_types_are_their_names_as_strings_and_map_from_token_kinds() -> None:
    assert EventType.for_kind("click") is EventType.CLICKED and EventType.CLICKED == "clicked"
    assert str(EventType.OPENED) == "opened" and TrackingEvent("opened", T0, "m", "r").event_type is EventType.OPENED
    with pytest.raises(mailtrack.InvalidEvent, match="visit"):
        EventType.for_kind("visit")


def test_an_event_survives_its_dict_form() -> None:
    event = TrackingEvent("clicked", T0, "m", "r@x", url="https://x.example/", link_index=2, metadata={"c": 1}, first=True)
    assert TrackingEvent.from_dict(event.to_dict()) == event
