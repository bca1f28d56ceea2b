"""Running a batch in this process and on a process pool: order, layout, failures, bounded memory, clean stops."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pytest

from mailtrack.batch import EngineError, Interrupted, Item, Job, Partition, Report, in_process, process_pool, run_batch

BASE = "https://t.example.com"
JOB = Job(secret_keys=("k",), base_url=BASE, issued_at=1_767_225_600, recipient="r@x.example")


def eml(n: int, to: str = "ann@x.example") -> bytes:
    return (f"From: shop@x.example\nTo: {to}\nMessage-ID: <m{n}@x.example>\nContent-Type: text/html\n\n"
            f'<p><a href="https://x.example/{n}">{n}</a></p>\n').encode()


def campaign(root: Path) -> Path:
    """A small campaign of every format, with one bad message in the mbox and one bad record."""
    camp = root / "camp"
    (camp / "eml").mkdir(parents=True)
    for n in range(5):
        (camp / "eml" / f"{n}.eml").write_bytes(eml(n))
    (camp / "page.html").write_bytes(b'<body><a href="https://x.example/p">p</a></body>\n')
    (camp / "box.mbox").write_bytes(b"".join(b"From shop date\n" + eml(10 + n, "a@x, b@x" if n == 2 else "c@x") + b"\n"
                                             for n in range(4)))
    lines = [json.dumps({"message_id": f"j{n}", "recipient": "r@x", "html": f'<a href="https://x.example/j{n}">j</a>'})
             for n in range(6)]
    lines[3] = "{broken"
    (camp / "rows.jsonl").write_text("\n".join(lines) + "\n")
    return camp


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_run_writes_every_output_in_order_and_lists_the_failures(tmp_path: Path) -> None:
    camp = campaign(tmp_path)
    report = run_batch(JOB, [camp], tmp_path / "out")
    assert sorted(files(tmp_path / "out")) == ["camp/box.mbox", "camp/eml/0.eml", "camp/eml/1.eml", "camp/eml/2.eml",
                                               "camp/eml/3.eml", "camp/eml/4.eml", "camp/page.html", "camp/rows.jsonl"]
    s = report.summary
    assert (s.messages, s.failed, report.files_written, report.interrupted) == (14, 2, 8, False)
    assert [f.where for f in s.errors] == [f"{camp}/box.mbox message 3", f"{camp}/rows.jsonl line 4"]
    rows = (tmp_path / "out" / "camp" / "rows.jsonl").read_text().splitlines()
    assert [json.loads(row).get("message_id") for row in rows] == ["j0", "j1", "j2", None, "j4", "j5"]
    assert (tmp_path / "out" / "camp" / "box.mbox").read_bytes().count(b"From shop date\n") == 4


def test_the_output_does_not_depend_on_chunks_or_workers(tmp_path: Path) -> None:
    camp = campaign(tmp_path)
    reference = run_batch(JOB, [camp], tmp_path / "one")
    run_batch(JOB, [camp], tmp_path / "small", chunk_items=1)
    pooled = run_batch(JOB, [camp], tmp_path / "pool", engine=process_pool(2), chunk_items=2, chunk_bytes=300)
    assert files(tmp_path / "one") == files(tmp_path / "small") == files(tmp_path / "pool")
    assert pooled.summary.errors == reference.summary.errors
    assert pooled.summary.to_dict() | {"seconds": 0} == reference.summary.to_dict() | {"seconds": 0}
    assert multiprocessing.active_children() == []  # the pool is shut down


class _Sizing:
    """An engine with chunk bounds of its own (as the Dask engine has): records the size of each chunk it gets."""

    chunk_items = 7
    chunk_bytes = 1 << 30

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(self, job: Job, chunks: Iterable[Sequence[Item]]) -> Iterator[Partition]:
        for items in chunks:
            self.sizes.append(len(items))
            yield from in_process(job, [items])


def test_an_engine_chooses_its_chunk_bounds_unless_the_caller_does(tmp_path: Path) -> None:
    camp = campaign(tmp_path)
    engine = _Sizing()
    run_batch(JOB, [camp], tmp_path / "own", engine=engine)
    assert max(engine.sizes) == 7 and sum(engine.sizes) > 7
    chosen = _Sizing()
    run_batch(JOB, [camp], tmp_path / "chosen", engine=chosen, chunk_items=3)
    assert max(chosen.sizes) == 3 and sum(chosen.sizes) == sum(engine.sizes)
    assert files(tmp_path / "own") == files(tmp_path / "chosen")
    plain: list[int] = []

    def bare(job: Job, chunks: Iterable[Sequence[Item]]) -> Iterator[Partition]:
        for items in chunks:
            plain.append(len(items))
            yield from in_process(job, [items])

    run_batch(JOB, [camp], tmp_path / "plain", engine=bare)
    assert plain == [sum(engine.sizes)]  # the default bound (64 items) holds this whole small campaign


def test_the_pool_holds_a_bounded_number_of_chunks(tmp_path: Path) -> None:
    pulled = 0
    ahead = []

    def chunks() -> Iterator[list[Item]]:
        nonlocal pulled
        for n in range(12):
            pulled += 1
            yield [Item("eml", eml(n), f"{n}.eml")]

    engine = process_pool(2, in_flight=3)
    for done, partition in enumerate(engine(JOB, chunks()), 1):
        ahead.append(pulled - done)
        assert partition.summary.messages == 1
    assert max(ahead) <= 3 and len(ahead) == 12  # never more than in_flight chunks read and not yet given back


def test_a_file_that_fails_as_a_whole_has_no_output_and_does_not_stop_the_run(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.mbox").write_bytes(b"Subject: not an mbox\n\nbody\n")
    (tmp_path / "in" / "b.eml").write_bytes(eml(1))
    (tmp_path / "out" / "in" / "c").mkdir(parents=True)
    (tmp_path / "in" / "c.eml").write_bytes(eml(2))
    (tmp_path / "out" / "in" / "c.eml").mkdir()  # a directory where the output should go
    report = run_batch(JOB, [tmp_path / "in"], tmp_path / "out")
    assert [(f.where.rsplit("/", 1)[1], f.reason.split(":")[0]) for f in report.summary.errors] == [
        ("a.mbox", "not an mbox"), ("c.eml", "cannot write its output")]
    assert (tmp_path / "out" / "in" / "b.eml").is_file() and not (tmp_path / "out" / "in" / "a.mbox").exists()
    assert report.summary.failed == 0  # whole files failed, no single message


@pytest.mark.parametrize("engine", [in_process, process_pool(2)], ids=["in-process", "pool"])
def test_a_ctrl_c_stops_cleanly_and_drops_the_output_being_written(tmp_path: Path, engine: object) -> None:
    big = tmp_path / "in" / "big.jsonl"
    big.parent.mkdir()
    big.write_text("".join(json.dumps({"message_id": f"j{n}", "recipient": "r@x", "html": "<a href='https://x.example/'>x"})
                           + "\n" for n in range(50)))
    (tmp_path / "in" / "a.eml").write_bytes(eml(1))
    calls = []

    def progress(report: Report, read: int | None) -> None:
        calls.append(read)
        if len(calls) == 2:  # a.eml is written, big.jsonl is half way
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as stopped:
        run_batch(JOB, [tmp_path / "in"], tmp_path / "out", engine=engine, chunk_items=10,  # type: ignore[arg-type]
                  progress=progress)
    report = stopped.value.report
    assert report.interrupted and report.files_written == 1 and report.summary.messages >= 11
    assert sorted(p.name for p in (tmp_path / "out" / "in").iterdir()) == ["a.eml"]  # nothing half-written, no temp file
    assert multiprocessing.active_children() == []


def test_an_engine_that_breaks_the_contract_is_an_error_not_a_wrong_output(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    for n in range(3):
        (tmp_path / "in" / f"{n}.eml").write_bytes(eml(n))

    def lossy(job: Job, chunks: Iterable[Sequence[Item]]) -> Iterator[Partition]:
        for items in chunks:
            yield Partition(in_process(job, [items[1:]]).__next__().results)  # drops an item's result

    with pytest.raises(EngineError, match="results for a chunk of 3 items"):
        run_batch(JOB, [tmp_path / "in"], tmp_path / "out", engine=lossy)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.eml"))
