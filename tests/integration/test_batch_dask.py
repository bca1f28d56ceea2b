"""The Dask engine on a real ``distributed.LocalCluster`` of 2 worker processes, 1 thread each (issue 10).

Same job, same inputs: the cluster's output is the in-process run's, byte for
byte, in every input format; a worker killed while it holds partitions loses
and duplicates nothing; the job reaches the workers as a plugin (never inside
a task), and is gone from them when the batch ends.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from support.helpers import CORPUS

pytest.importorskip("distributed")

from distributed import Client, LocalCluster  # noqa: E402

from mailtrack.batch import Item, Job, Partition, Summary, in_process, run_batch  # noqa: E402
from mailtrack.batch import dask_engine as dask_module  # noqa: E402
from mailtrack.batch.dask_engine import dask_engine, register_job  # noqa: E402
from mailtrack.exceptions import ConfigurationError  # noqa: E402

pytestmark = pytest.mark.timeout(240)

SECRET = "dask-test-secret-7f3a9c"
JOB = Job(secret_keys=(SECRET,), base_url="https://t.example.com/t", issued_at=1_767_225_600, recipient="all@example.com")


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                      worker_dashboard_address=None) as cluster, Client(cluster) as dask_client:
        yield dask_client


def _html(i: int, links: int = 12) -> str:
    anchors = "".join(f'<p><a href="https://shop.example.com/p/{i}/{k}?ref=mail">item {k}</a></p>' for k in range(links))
    return f"<html><body><h1>Hello {i}</h1>{anchors}<a href=\"mailto:help@example.com\">help</a></body></html>"


def _message(i: int) -> bytes:
    return (f"From: shop@example.com\r\nTo: u{i}@example.com\r\nSubject: Offer {i}\r\nMessage-ID: <m{i}@example.com>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{_html(i, 5)}\r\n").encode()


def _inputs(root: Path, records: int = 400) -> list[str]:
    """JSON lines (with one bad record), an mbox, a directory of .eml (corpus ones when present) and HTML files."""
    root.mkdir()
    with (root / "campaign.jsonl").open("w") as out:
        for i in range(records):
            out.write(json.dumps({"message_id": f"j{i}", "recipient": f"u{i}@example.com", "html": _html(i)}) + "\n")
        out.write('{"message_id": 7}\n')  # a bad record: reported, the batch goes on
    (root / "box.mbox").write_bytes(b"".join(b"From shop@example.com Mon Nov 30 00:00:00 2026\n" + _message(i).replace(b"\r\n", b"\n")
                                             + b"\n" for i in range(25)))
    mail, pages = root / "mail", root / "pages"
    mail.mkdir()
    pages.mkdir()
    for number, path in enumerate(sorted(CORPUS.rglob("*.eml"))[:20] if CORPUS.is_dir() else []):
        shutil.copyfile(path, mail / f"corpus{number}.eml")
    for number, path in enumerate(sorted(CORPUS.rglob("*.html"))[:20] if CORPUS.is_dir() else []):
        shutil.copyfile(path, pages / f"corpus{number}.html")
    for i in range(10):
        (mail / f"gen{i}.eml").write_bytes(_message(i))
    for i in range(5):
        (pages / f"page{i}.html").write_text(_html(i, 3))
    return [str(root / "campaign.jsonl"), str(root / "box.mbox"), str(mail), str(pages)]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def _counts(summary: Summary) -> tuple[Any, ...]:
    return (summary.messages, summary.failed, summary.parts, summary.links_tracked, dict(summary.links_skipped),
            summary.undecodable_parts, summary.errors)


def test_the_cluster_writes_the_local_runs_bytes_in_every_format(client: Client, tmp_path: Path) -> None:
    inputs = _inputs(tmp_path / "in")
    local = run_batch(JOB, inputs, tmp_path / "local", engine=in_process)
    remote = run_batch(JOB, inputs, tmp_path / "dask", engine=dask_engine(client), chunk_items=16)
    expected = _tree(tmp_path / "local")
    assert len(expected) >= 4 + 10 + 5 and _tree(tmp_path / "dask") == expected
    assert _counts(remote.summary) == _counts(local.summary)
    assert remote.summary.messages >= 400 + 25 + 10 + 5 and remote.summary.failed >= 1  # the bad JSON record, at least
    assert list(tmp_path.joinpath("dask").rglob("*.tmp*")) == []


def test_the_job_reaches_each_worker_as_a_plugin_never_in_a_task(client: Client, tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def spying(job: Job, chunks: Iterable[Sequence[Item]]) -> Iterator[Partition]:
        for number, partition in enumerate(dask_engine(client, in_flight=4)(job, chunks)):
            if number == 0:  # while the batch runs: every worker holds the job, and no task spec names the key
                seen.append(sorted(set().union(*client.run(lambda: list(dask_module._REWRITERS)).values())))
                specs = client.run_on_scheduler(lambda dask_scheduler: [repr(ts.run_spec) for ts in dask_scheduler.tasks.values()])
                assert specs and not any(SECRET in spec for spec in specs)
            yield partition

    run_batch(JOB, _inputs(tmp_path / "in", records=200), tmp_path / "out", engine=spying, chunk_items=8)
    assert len(seen) == 1 and len(seen[0]) == 1 and seen[0][0].startswith("mailtrack-batch-")
    per_worker = client.run(lambda: sorted(dask_module._REWRITERS))
    assert len(per_worker) == 2 and all(names == [] for names in per_worker.values())  # unregistered when the batch ended


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = _inputs(tmp_path / "in", records=1500)
    local = run_batch(JOB, inputs, tmp_path / "local", engine=in_process)
    killed: list[int] = []
    submitted: list[int] = []
    submit = dask_module._submit

    def counting(client: Any, items: list[Item], name: str) -> Any:
        submitted.append(len(items))
        return submit(client, items, name)

    monkeypatch.setattr(dask_module, "_submit", counting)
    yielded: list[int] = []

    def killing(job: Job, chunks: Iterable[Sequence[Item]]) -> Iterator[Partition]:
        for number, partition in enumerate(dask_engine(client, in_flight=8)(job, chunks)):
            if number == 2:
                busy = {address for address, keys in client.processing().items() if keys}
                pids = client.run(os.getpid)
                victim = sorted(busy)[0] if busy else sorted(pids)[0]
                killed.append(pids[victim])
                os.kill(pids[victim], signal.SIGKILL)  # the nanny starts a new worker; the engine resends what it held
            yielded.append(len(partition.results))
            yield partition

    report = run_batch(JOB, inputs, tmp_path / "dask", engine=killing, chunk_items=10)
    assert killed
    assert len(submitted) > len([n for n in yielded if n])  # the killed worker's partitions were sent again
    assert _tree(tmp_path / "dask") == _tree(tmp_path / "local")
    lines = (tmp_path / "dask" / "campaign.jsonl").read_bytes().splitlines()
    assert len(lines) == 1501 and len(set(lines)) == 1501  # every record once, none twice
    assert _counts(report.summary) == _counts(local.summary)
    client.wait_for_workers(2, timeout=60)


def test_an_unreachable_scheduler_is_a_configuration_error(tmp_path: Path) -> None:
    engine = dask_engine("tcp://127.0.0.1:9")
    with pytest.raises(ConfigurationError, match="cannot reach the Dask scheduler"):
        run_batch(JOB, _inputs(tmp_path / "in", records=3), tmp_path / "out", engine=engine)


def test_register_job_refuses_what_is_not_a_job(client: Client) -> None:
    with pytest.raises(TypeError):
        register_job(client, {"secret_keys": ["k"]})  # type: ignore[arg-type]


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILTRACK_")}
    env.update(MAILTRACK_SECRET_KEY=SECRET, MAILTRACK_BASE_URL=JOB.base_url)
    return subprocess.run([sys.executable, "-m", "mailtrack", "rewrite", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=180, check=False)


def test_the_command_runs_on_the_cluster_with_dask_and_writes_the_one_process_bytes(client: Client, tmp_path: Path) -> None:
    inputs = _inputs(tmp_path / "in", records=300)
    common = ["--issued-at", "2026-01-01T00:00:00Z", "--recipient", "all@example.com", "--json"]
    local = _cli(*inputs, "--out", tmp_path / "local", "--workers", "1", *common)
    remote = _cli(*inputs, "--out", tmp_path / "dask", "--dask", client.scheduler.address, *common)
    assert local.returncode == remote.returncode == 1, remote.stderr  # the bad JSON record: listed, the rest written
    assert _tree(tmp_path / "dask") == _tree(tmp_path / "local")
    def counts(stdout: str) -> dict[str, object]:
        return {k: v for k, v in json.loads(stdout).items() if "seconds" not in k and "per_second" not in k}

    assert counts(remote.stdout) == counts(local.stdout) and counts(local.stdout)["messages"] > 300


def test_dask_and_workers_together_and_an_unreachable_scheduler_are_told_apart(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path / "in", records=3)
    both = _cli(*inputs, "--out", tmp_path / "o1", "--dask", "tcp://127.0.0.1:9", "--workers", "2", "--recipient", "a@x")
    assert both.returncode == 2 and "--workers" in both.stderr
    gone = _cli(*inputs, "--out", tmp_path / "o2", "--dask", "tcp://127.0.0.1:9", "--recipient", "a@x")
    assert gone.returncode == 1 and "cannot reach the Dask scheduler" in gone.stderr and "Traceback" not in gone.stderr
    assert not (tmp_path / "o2").exists() or not any((tmp_path / "o2").rglob("*.jsonl"))


def test_a_graph_of_your_own_rewrites_a_bag_with_the_registered_job(client: Client) -> None:
    import dask
    import dask.bag

    items = [Item("jsonl", json.dumps({"message_id": f"b{i}", "recipient": f"u{i}@example.com", "html": _html(i, 2)}).encode(),
                  f"bag record {i}", end=b"\n") for i in range(30)]
    name = register_job(client, JOB)
    try:
        bag = dask.bag.from_sequence(items, npartitions=3)
        partitions = dask.compute(*[dask.delayed(dask_module.rewrite_on_worker)(part, name) for part in bag.to_delayed()])
    finally:
        client.unregister_worker_plugin(name)
    assert [type(p) for p in partitions] == [Partition] * 3
    expected = in_process(JOB, [items])
    assert [r.output for p in partitions for r in p.results] == [r.output for p in expected for r in p.results]
    assert Summary.total(p.summary for p in partitions).links_tracked == 60
