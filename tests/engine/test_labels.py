"""Names and labels in the engine: their bounds, the name patterns, a schema 7 database
brought to schema 8, retention taking label rows with their jobs, and the indexes that a
filtered list walks."""

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import hypothesis.strategies as st
import pytest
import trio
from hypothesis import given, settings

from jogger import InvalidRequest, JobFilter, JobManager, JobState, Retention
from jogger.engine.labels import check_labels, check_name
from jogger.engine.listing import glob, page_query
from jogger.engine.rows import SELECT
from jogger.engine.store import SCHEMA_VERSION, JobStore
from tests.procs import eventually

OLD = "0b6f1f0e-8d4c-4b4e-9a53-3c1f2d6e7a10"
STARTED = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)

# The jobs table as schema 7 left it (before names and labels), with its indexes.
SCHEMA_7 = """
CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    owner            TEXT NOT NULL,
    state            TEXT NOT NULL,
    argv             TEXT NOT NULL,
    reason           TEXT NOT NULL DEFAULT '',
    exit_code        INTEGER,
    signal           INTEGER,
    pid              INTEGER NOT NULL,
    pid_start        INTEGER NOT NULL DEFAULT 0,
    boot_id          TEXT NOT NULL DEFAULT '',
    started_at       REAL NOT NULL,
    ended_at         REAL,
    output_bytes     INTEGER NOT NULL DEFAULT 0,
    output_truncated INTEGER NOT NULL DEFAULT 0,
    output_error     TEXT NOT NULL DEFAULT '',
    cgroup           TEXT NOT NULL,
    limits           TEXT NOT NULL,
    cpu_seconds      REAL,
    memory_peak      INTEGER,
    run_as           TEXT NOT NULL DEFAULT '',
    run_as_uid       INTEGER,
    supervisor_pid   INTEGER NOT NULL DEFAULT 0,
    supervisor_start INTEGER NOT NULL DEFAULT 0,
    input            TEXT NOT NULL DEFAULT 'none',
    isolation        TEXT NOT NULL DEFAULT '',
    external_id      TEXT NOT NULL DEFAULT '',
    timeout          REAL
);
CREATE INDEX jobs_by_owner ON jobs (owner, seq);
CREATE INDEX jobs_running ON jobs (seq) WHERE state = 'running';
PRAGMA user_version = 7;
"""


def write_schema_7_database(state: Path) -> None:
    (state / "logs").mkdir(mode=0o700, parents=True)
    (state / "logs" / f"{OLD}.log").write_bytes(b"old\n")
    with sqlite3.connect(state / "jobs.db") as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.executescript(SCHEMA_7)
        db.execute(
            "INSERT INTO jobs (id, owner, state, argv, exit_code, pid, started_at, ended_at, "
            "output_bytes, cgroup, limits, timeout) "
            "VALUES (?, 'alice', 'completed', '[\"echo\", \"old\"]', 0, 4242, ?, ?, 4, 'none', "
            "'{}', 60)",
            (OLD, STARTED.timestamp(), (STARTED + timedelta(seconds=1)).timestamp()),
        )
    db.close()


def tables_and_version(path: Path) -> tuple[set[str], int]:
    with sqlite3.connect(path) as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        version = db.execute("PRAGMA user_version").fetchone()[0]
    db.close()
    return names, version


async def test_a_schema_7_database_is_migrated_and_its_jobs_have_no_name_or_labels(
    tmp_path: Path,
) -> None:
    write_schema_7_database(tmp_path)
    async with JobManager(tmp_path, cgroups="none") as jobs:
        old = await jobs.status("alice", OLD)
        assert (old.argv, old.state, old.timeout) == (("echo", "old"), JobState.COMPLETED, 60.0)
        assert (old.name, old.labels) == ("", {})
        # Found by what it has (a state), never by what it has not.
        assert [s.id for s in (await jobs.list("alice", wanted=JobFilter(name="*"))).jobs] == []
        completed = JobFilter(states=frozenset({JobState.COMPLETED}))
        assert [s.id for s in (await jobs.list("alice", wanted=completed)).jobs] == [OLD]
        new = await jobs.start("alice", ["true"], name="new", labels={"k": "v"})
        with trio.fail_after(20):
            await jobs.wait("alice", new.id)
    names, version = tables_and_version(tmp_path / "jobs.db")
    assert version == SCHEMA_VERSION
    assert {"labels", "labels_by_value", "labels_by_owner", "jobs_by_owner_state"} <= names
    async with JobManager(tmp_path, cgroups="none") as again:
        labelled = JobFilter(labels={"k": "v"})
        [found] = (await again.list("alice", wanted=labelled)).jobs
        assert (found.id, found.name, found.labels) == (new.id, "new", {"k": "v"})
        assert [s.id for s in (await again.list("alice")).jobs] == [new.id, OLD]


async def test_retention_deletes_the_label_rows_of_the_jobs_it_deletes(tmp_path: Path) -> None:
    async with JobManager(tmp_path, cgroups="none", retention=Retention(max_jobs=2)) as jobs:
        ids = []
        for i in range(6):
            started = await jobs.start("alice", ["true"], labels={"n": str(i), "all": "yes"})
            with trio.fail_after(20):
                await jobs.wait("alice", started.id)
            ids.append(started.id)

        async def two_left() -> bool:
            return len((await jobs.list("alice")).jobs) == 2

        await eventually(two_left)
        everyone = await jobs.list("alice", wanted=JobFilter(labels={"all": "yes"}))
        assert [s.id for s in everyone.jobs] == ids[:-3:-1]
    with sqlite3.connect(tmp_path / "jobs.db") as db:
        labelled = db.execute("SELECT value FROM labels WHERE key = 'n' ORDER BY seq").fetchall()
        (orphans,) = db.execute(
            "SELECT count(*) FROM labels WHERE seq NOT IN (SELECT seq FROM jobs)"
        ).fetchone()
    db.close()
    assert (labelled, orphans) == ([("4",), ("5",)], 0)


async def test_names_and_labels_are_checked_before_a_job_starts(jobs: JobManager) -> None:
    bad: list[tuple[dict[str, object], str]] = [
        ({"name": "x" * 129}, "takes 129 bytes; at most 128"),
        ({"name": "\u202eevil"}, "must be printable"),
        ({"labels": {f"k{i}": "v" for i in range(33)}}, "at most 32 labels"),
        ({"labels": {"k": "\x1b[31m"}}, "must be printable"),
        ({"labels": {"": "v"}}, "bad label key ''"),
        ({"labels": {"a/": "v"}}, "an empty name after the /"),
        ({"labels": {"/a": "v"}}, "an empty prefix"),
        ({"labels": {"a_": "v"}}, "beginning and ending with a letter or digit"),
        ({"labels": {"x/y/z": "v"}}, "its prefix must be a DNS subdomain"),
        ({"labels": {"k": 1}}, "mapping of strings to strings"),
    ]
    for arguments, message in bad:
        with pytest.raises(InvalidRequest, match=message):
            await jobs.start("alice", ["true"], **arguments)  # type: ignore[arg-type]
    assert (await jobs.list("alice")).jobs == []


def test_the_bounds_take_their_largest_values() -> None:
    assert check_name("n" * 128) == "n" * 128
    assert check_name("é" * 64) == "é" * 64  # 128 bytes
    with pytest.raises(InvalidRequest, match="129 bytes"):
        check_name("é" * 64 + "n")
    largest = {
        "a" * 63: "v" * 256,
        "p" * 253 + "/" + "k" * 63: "é" * 128,
        "a.b-c_d": "",
        "Z": "spaces and = signs, ok",
        **{f"k{i}": "" for i in range(28)},
    }
    assert len(largest) == 32
    assert check_labels(largest) == largest
    for key in ("a" * 64, "p" * 254 + "/k", "Upper.example/k", "a..b/k", "-a"):
        with pytest.raises(InvalidRequest, match="bad label key"):
            check_labels({key: "v"})
    with pytest.raises(InvalidRequest, match="257 bytes"):
        check_labels({"k": "é" * 128 + "v"})


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("build", ["build"], ["builds", "Build", "rebuild"]),
        ("build-*", ["build-", "build-7", "build-a-b"], ["build", "xbuild-1"]),
        ("*-?", ["a-1", "-x", "a-b-c"], ["a-12", "a-"]),
        ("**x", ["x", "aax"], ["xa"]),
        ("a\\*b", ["a*b"], ["ab", "axb"]),
        ("\\?", ["?"], ["x"]),
        ("[a]*", ["[a]", "[a]b"], ["a", "ab"]),
        ("x]", ["x]"], ["x"]),
        ("back\\\\slash", ["back\\slash"], ["backslash"]),
        ("ü?", ["üa", "üé"], ["u", "üab"]),
    ],
)
def test_a_name_pattern_matches_the_whole_name(
    pattern: str, matches: list[str], misses: list[str]
) -> None:
    db = sqlite3.connect(":memory:")
    for name, expected in [(n, True) for n in matches] + [(n, False) for n in misses]:
        (found,) = db.execute("SELECT ? GLOB ?", (name, glob(pattern))).fetchone()
        assert bool(found) is expected, (pattern, name)
    db.close()


def reference(pattern: str) -> re.Pattern[str]:
    """What JobFilter's docstring says a pattern means, as a regular expression."""
    parts, chars = [], iter(pattern)
    for char in chars:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(next(chars) if char == "\\" else char))
    return re.compile("".join(parts), re.DOTALL)


# Few characters, the special ones among them, so that patterns and names meet often.
ALPHABET = st.sampled_from(["a", "b", "é", "*", "?", "[", "]", "\\", "^", "!", "-"])


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(st.lists(ALPHABET, max_size=8).map("".join), st.lists(ALPHABET, max_size=8).map("".join))
def test_a_pattern_matches_as_documented(pattern: str, name: str) -> None:
    try:
        sql = glob(pattern)
    except InvalidRequest:
        # Refused only for a lone backslash at the end: an odd run of them.
        assert (len(pattern) - len(pattern.rstrip("\\"))) % 2 == 1, pattern
        return
    db = sqlite3.connect(":memory:")
    try:
        (found,) = db.execute("SELECT ? GLOB ?", (name, sql)).fetchone()
    finally:
        db.close()
    assert bool(found) == bool(reference(pattern).fullmatch(name)), (pattern, sql, name)


def test_bad_filters_are_refused() -> None:
    for wanted, message in [
        (JobFilter(name="a\\"), "lone"),
        (JobFilter(name="x" * 257), "at most 256 bytes"),
        (JobFilter(name="a\nb"), "printable"),
        (JobFilter(labels={"bad key": "v"}), "bad label key"),
        (JobFilter(labels={f"k{i}": "v" for i in range(33)}), "at most 32 labels"),
    ]:
        with pytest.raises(InvalidRequest, match=message):
            wanted.check()
    JobFilter(name="x" * 256, labels={f"k{i}": "v" for i in range(32)}).check()


FILTERS = {
    "a label": JobFilter(labels={"team": "ml"}),
    "two labels, states and a name": JobFilter(
        labels={"team": "ml", "env": "prod"},
        states=frozenset({JobState.FAILED, JobState.KILLED}),
        name="nightly-*",
    ),
    "a state": JobFilter(states=frozenset({JobState.FAILED})),
    "states": JobFilter(states=frozenset({JobState.RUNNING, JobState.COMPLETED})),
    "none": JobFilter(),
    "a name": JobFilter(name="x*"),
}


@pytest.mark.parametrize("owner", ["alice", None])
@pytest.mark.parametrize("what", FILTERS)
async def test_a_filtered_page_walks_an_index_newest_first(
    tmp_path: Path, owner: str | None, what: str
) -> None:
    store = JobStore(tmp_path / "jobs.db")
    await store.open()
    await store.close()
    wanted = FILTERS[what]
    sql, args = page_query(SELECT, owner, wanted, before=1000, limit=101)
    with sqlite3.connect(tmp_path / "jobs.db") as db:
        plan = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", args)]
    db.close()
    text = "\n".join(plan)
    # No table is read whole, and no walk of the history is sorted afterwards: each stops
    # once the page is full (a union of states sorts only the pages of its arms).
    assert not any(step.startswith(("SCAN jobs", "SCAN labels", "SCAN l")) for step in plan), text
    if len(wanted.states) < 2:
        assert "TEMP B-TREE" not in text, text
    first = plan[0] if len(wanted.states) < 2 or wanted.labels else text
    if wanted.labels:
        index = "labels_by_owner" if owner else "labels_by_value"
        assert first.startswith(f"SEARCH l0 USING COVERING INDEX {index}"), text
    elif wanted.states:
        index = "jobs_by_owner_state" if owner else "jobs_by_state"
        assert f"SEARCH jobs USING INDEX {index}" in first, text
    elif owner:
        assert first.startswith("SEARCH jobs USING INDEX jobs_by_owner (owner=? AND seq<?)"), text
    else:
        assert first.startswith("SEARCH jobs USING INTEGER PRIMARY KEY (rowid<?)"), text
