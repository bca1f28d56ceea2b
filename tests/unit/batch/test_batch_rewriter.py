"""Rewriting items: each format, what a failed item leaves in its place, and the partition's counts."""

from __future__ import annotations

import json
import pickle

from mailtrack.batch import Item, Job, Partition, Rewriter, rewrite_partition
from mailtrack.core.tracker import Tracker

BASE = "https://t.example.com"
JOB = Job(secret_keys=("old", "new"), base_url=BASE, issued_at=1_767_225_600, recipient="r@x.example",
          metadata={"campaign": "spring"})
TRACKER = Tracker(["new"], BASE)
EML = (b"From: shop@x.example\r\nTo: ann@x.example\r\nMessage-ID: <m1@x.example>\r\nContent-Type: text/html\r\n\r\n"
       b'<p><a href="https://x.example/a">a</a> <a href="mailto:x@x.example">m</a></p>\r\n')


def destinations(output: bytes) -> list[str]:
    urls = [part.split(b'"', 1)[0].decode() for part in output.split(b'href="')[1:]]
    return [TRACKER.verify(url).url or "" for url in urls if url.startswith(BASE)]


def test_an_eml_item() -> None:
    partition = rewrite_partition(JOB, [Item("eml", EML, "a.eml")])
    [result] = partition.results
    assert result.error is None and result.output is not None and destinations(result.output) == ["https://x.example/a"]
    verified = TRACKER.verify(result.output.split(b'href="')[1].split(b'"')[0].decode())
    assert (verified.message_id, verified.recipient, dict(verified.metadata)) == ("m1@x.example", "ann@x.example",
                                                                                  {"campaign": "spring"})
    s = partition.summary
    assert (s.messages, s.parts, s.links_tracked, dict(s.links_skipped), s.errors) == (1, 1, 1, {"scheme": 1}, [])


def test_an_mbox_item_keeps_its_envelope_and_separator() -> None:
    item = Item("mbox", EML, "in.mbox message 1", envelope=b"From shop@x.example date\r\n", end=b"\r\n")
    [result] = rewrite_partition(JOB, [item]).results
    assert result.output is not None
    assert result.output.startswith(b"From shop@x.example date\r\nFrom: shop") and result.output.endswith(b"\r\n\r\n")


def test_an_html_item_takes_its_name_as_message_id_and_keeps_its_encoding() -> None:
    page = '<body><a href="https://x.example/é">café</a></body>'.encode("latin-1")
    job = Job(secret_keys=("new",), base_url=BASE, issued_at=0, recipient="r@x.example", encoding="latin-1")
    [result] = rewrite_partition(job, [Item("html", page, "news.html", name="news")]).results
    assert result.output is not None and b"caf\xe9" in result.output
    url = result.output.split(b'href="')[1].split(b'"')[0].decode("latin-1")
    assert (TRACKER.verify(url).message_id, TRACKER.verify(url).url) == ("news", "https://x.example/é")


def test_jsonl_records_bodies_and_raw_messages() -> None:
    records = [
        {"message_id": "j1", "recipient": "a@x.example", "html": '<a href="https://x.example/1">1</a>',
         "text": "see https://x.example/2", "tracking_settings": {"click_tracking": {"enable_text": True}},
         "metadata": {"row": 1}, "subject": "kept as it is"},
        {"raw": EML.decode()},
    ]
    items = [Item("jsonl", json.dumps(r).encode(), f"c.jsonl line {n}", end=b"\n") for n, r in enumerate(records, 1)]
    partition = rewrite_partition(JOB, items)
    first, second = (json.loads(r.output or b"") for r in partition.results)
    assert list(first) == ["message_id", "recipient", "html", "text", "tracking_settings", "metadata", "subject"]
    assert first["subject"] == "kept as it is" and "https://t.example.com/c/" in first["text"]
    html_url = first["html"].split('href="')[1].split('"')[0]
    assert TRACKER.verify(html_url).metadata == {"campaign": "spring", "row": 1}  # the record's keys over the job's
    assert (second["message_id"], second["recipient"]) == ("m1@x.example", "ann@x.example")
    assert destinations(second["raw"].encode()) == ["https://x.example/a"]
    assert all(r.output is not None and r.output.endswith(b"\n") for r in partition.results)
    assert (partition.summary.messages, partition.summary.parts, partition.summary.links_tracked) == (2, 3, 3)


def test_a_failed_item_is_counted_and_leaves_what_its_format_needs() -> None:
    two_to = EML.replace(b"To: ann@x.example", b"To: a@x.example, b@x.example")
    items = [
        Item("eml", two_to, "bad.eml"),
        Item("mbox", two_to, "in.mbox message 2", envelope=b"From a date\n", end=b"\n"),
        Item("jsonl", b'{"message_id": "j", "recipient": "r", "html": 5}', "c.jsonl line 4", end=b"\n"),
        Item("jsonl", b"{not json", "c.jsonl line 5", end=b"\n"),
        Item("jsonl", b"  ", "c.jsonl line 6", end=b"\n"),  # blank: no record, kept
        Item("html", b"\xff", "x.html", name="x"),
    ]
    partition = rewrite_partition(JOB, items)
    eml, mbox, wrong_type, not_json, blank, html = partition.results
    assert eml.output is None and "2 To addresses" in (eml.error or "")
    assert mbox.output == b"From a date\n" + two_to + b"\n"  # as it was: the mbox keeps its count
    assert json.loads(wrong_type.output or b"") == {"message_id": "j", "recipient": "r",
                                                    "error": "html must be a string, not int"}
    assert json.loads(not_json.output or b"")["error"].startswith("not valid JSON")
    assert blank.output == b"  \n" and blank.error is None
    assert html.output is None and "not utf-8" in (html.error or "")
    s = partition.summary
    assert (s.messages, s.failed) == (0, 5)
    assert [f.where for f in s.errors] == ["bad.eml", "in.mbox message 2", "c.jsonl line 4", "c.jsonl line 5", "x.html"]


def test_a_record_needs_an_identity_for_its_bodies() -> None:
    job = Job(secret_keys=("new",), base_url=BASE, issued_at=0)
    [result] = rewrite_partition(job, [Item("jsonl", b'{"html": "<a href=\\"https://x.example/\\">x</a>"}', "l")]).results
    assert "needs message_id and recipient" in (result.error or "")


def test_a_rewriter_gives_the_same_bytes_on_every_call_and_partitions_pickle() -> None:
    rewriter = Rewriter(JOB)
    items = [Item("eml", EML.replace(b"Message-ID: <m1@x.example>\r\n", b""), "no-id.eml")]  # gets a stable id
    first, second = rewriter.partition(items), rewriter.partition(items)
    assert first.results == second.results
    assert pickle.loads(pickle.dumps(first)) == Partition(first.results, first.summary)


def test_a_records_tags_are_signed_into_its_links_and_a_bad_one_is_its_error() -> None:
    records = [{"message_id": "t1", "recipient": "a@x.example", "html": '<a href="https://x.example/1">1</a>',
                "tags": ["spring", "vip"]},
               {"raw": EML.decode(), "tags": ["raw-tag"]},
               {"message_id": "t3", "recipient": "a@x.example", "html": "<p>x</p>", "tags": "one-string"}]
    items = [Item("jsonl", json.dumps(r).encode(), f"c.jsonl line {n}", end=b"\n") for n, r in enumerate(records, 1)]
    partition = rewrite_partition(JOB, items)
    first, second, third = (json.loads(r.output or b"") for r in partition.results)
    assert TRACKER.verify(first["html"].split('href="')[1].split('"')[0]).tags == ("spring", "vip")
    assert TRACKER.verify(second["raw"].split('href="')[1].split('"')[0]).tags == ("raw-tag",)
    assert "tags must be a list of strings" in third["error"] and partition.summary.failed == 1
