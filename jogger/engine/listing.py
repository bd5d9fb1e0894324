"""Which jobs a list returns (JobFilter), and the SQL that finds a page of them.

A page is the newest jobs, up to its size, that are older than its token and pass the
filter. Each query walks an index newest first and stops once the page is full, so that
what a page costs follows the page, not the size of the history:

- with labels: the first label's index entries, (owner, key, value, seq) for an owner and
  (key, value, seq) for an administrator; each job's other labels are looked up by its
  primary key (seq, key), its state and name on its row;
- with states and no labels: a walk of (owner, state, seq), or (state, seq), per state,
  each stopped at the page's size, merged newest first;
- with neither: (owner, seq), or the table itself.

A name pattern narrows no index: it is tested on each job the walk visits, so a pattern
that few jobs match costs a walk of many (bench/labels.py measures it).

The page token is the seq of the last job visited: a place in the history, which a token
used with other filters (or none) just continues from. A job whose stored state is not its
live one (running, but ended a moment ago and not yet recorded; or waiting in a cluster's
queue) is found by its stored state and then tested on its live one (``admits``), so a page
may come back shorter than its size although more jobs follow.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import InvalidRequest, shown
from .labels import MAX_LABELS, MAX_NAME_BYTES, check_label
from .status import JobState, JobStatus

LIST_INDEXES = """
CREATE INDEX IF NOT EXISTS labels_by_value ON labels (key, value, seq);
CREATE INDEX IF NOT EXISTS labels_by_owner ON labels (owner, key, value, seq);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, seq);
CREATE INDEX IF NOT EXISTS jobs_by_owner_state ON jobs (owner, state, seq);
"""
"""The indexes the walks above take (the store's schema adds them; the labels table's
primary key is (seq, key))."""
MAX_PATTERN_BYTES = 2 * MAX_NAME_BYTES
"""Room for every character of the longest name, each escaped."""

_NOT_FINAL = ("queued", "running")
"""The stored states of a job that has not ended (a queued job may be on record as running)."""


@dataclass(frozen=True, slots=True)
class JobFilter:
    """The jobs a list returns: those that have every one of ``labels``, are in one of
    ``states`` (any state when empty) and have a name that ``name`` matches (any job, named or
    not, when empty).

    ``name`` is a pattern of the whole name: ``*`` matches any run of characters (none too),
    ``?`` any one character, and ``\\`` makes the character after it match itself; every
    other character matches itself, case and all. A job without a name matches no pattern.
    """

    labels: Mapping[str, str] = field(default_factory=dict)
    states: frozenset[JobState] = frozenset()
    name: str = ""

    def check(self) -> None:
        """InvalidRequest for labels no job could have and for a bad pattern."""
        if not isinstance(self.labels, Mapping) or len(self.labels) > MAX_LABELS:
            raise InvalidRequest(f"a list may ask for at most {MAX_LABELS} labels")
        for key, value in self.labels.items():
            check_label(key, value)
        if not all(isinstance(state, JobState) for state in self.states):
            raise InvalidRequest("states must be JobStates")
        if not isinstance(self.name, str):
            raise InvalidRequest("a name pattern must be a string")
        if not self.name.isprintable() or len(self.name.encode()) > MAX_PATTERN_BYTES:
            raise InvalidRequest(
                f"a name pattern is printable text of at most {MAX_PATTERN_BYTES} bytes, "
                f"not {shown(self.name, 40)}"
            )
        glob(self.name)

    def admits(self, status: JobStatus) -> bool:
        """Whether ``status``, a job's live status, is in one of the states asked for (its
        labels and name were checked by the query: they do not change)."""
        return not self.states or status.state in self.states


def glob(pattern: str) -> str:
    """``pattern`` (see JobFilter) as an SQLite GLOB pattern, in which ``[`` opens a set and
    nothing escapes: a literal ``*``, ``?`` or ``[`` is a set of itself."""
    out = []
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            escaped = next(chars, None)
            if escaped is None:
                raise InvalidRequest("a name pattern must not end in a lone \\")
            out.append(f"[{escaped}]" if escaped in "*?[" else escaped)
        elif char == "[":
            out.append("[[]")
        elif char == "*" and out and out[-1] == "*":
            continue  # the same, and a shorter walk for SQLite's matcher
        else:
            out.append(char)
    return "".join(out)


def page_query(
    select: str, owner: str | None, wanted: JobFilter, *, before: int, limit: int
) -> tuple[str, list[object]]:
    """The SQL, and its arguments, of up to ``limit`` rows of ``select`` (columns of the
    ``jobs`` table, its seq first), newest first, with seq below ``before``, of ``owner``'s
    jobs (everyone's with None) that pass ``wanted`` (its states by their stored names)."""
    where = ""
    args: list[object] = []
    if owner is not None:
        where += " AND jobs.owner = ?"
        args.append(owner)
    if wanted.name:
        where += " AND jobs.name != '' AND jobs.name GLOB ?"
        args.append(glob(wanted.name))
    states = _stored(wanted.states)
    if wanted.labels:
        (key, value), *others = wanted.labels.items()
        sql = (
            f"SELECT {select} FROM labels AS l0 CROSS JOIN jobs ON jobs.seq = l0.seq "
            "WHERE l0.key = ? AND l0.value = ? AND l0.seq < ?"
        )
        front: list[object] = [key, value, before]
        if owner is not None:
            sql += " AND l0.owner = ?"  # the walk; jobs.owner (in where) is what rules
            front.append(owner)
        for at, (key, value) in enumerate(others, 1):
            sql += (
                f" AND EXISTS (SELECT 1 FROM labels AS l{at} WHERE l{at}.seq = l0.seq "
                f"AND l{at}.key = ? AND l{at}.value = ?)"
            )
            front += [key, value]
        if states:
            sql += f" AND jobs.state IN ({', '.join('?' * len(states))})"
            front += states
        return f"{sql}{where} ORDER BY l0.seq DESC LIMIT ?", [*front, *args, limit]
    if states:
        branch = (
            f"SELECT {select} FROM jobs WHERE jobs.state = ? AND jobs.seq < ?{where} "
            "ORDER BY jobs.seq DESC LIMIT ?"
        )
        if len(states) == 1:
            return branch, [states[0], before, *args, limit]
        sql = " UNION ALL ".join(f"SELECT * FROM ({branch})" for _ in states)
        every: list[object] = []
        for state in states:
            every += [state, before, *args, limit]
        return f"{sql} ORDER BY 1 DESC LIMIT ?", [*every, limit]
    sql = f"SELECT {select} FROM jobs WHERE jobs.seq < ?{where} ORDER BY jobs.seq DESC LIMIT ?"
    return sql, [before, *args, limit]


def _stored(states: frozenset[JobState]) -> list[str]:
    """The stored states of jobs that may be in ``states`` now."""
    stored: set[str] = set()
    for state in states:
        stored.update(_NOT_FINAL if not state.is_final else (state.value,))
    return sorted(stored)
