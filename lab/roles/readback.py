"""A client role's transcript read back: its connections, each line's last attempt and its reply,
its losses, the bytes as they arrived.

Pure functions over the events the roles write (common.Transcript, reconnect.Redial), kept beside
their writers so that the format has one home; lab/checks.py words what they find. A client that
reconnects (telnet-client's `reconnect:`) leaves several connections, each with its own `conn`
number: a reply belongs to the connection its line went out on, and a line sent again after a loss
is judged by its last attempt (such a client's `sent` events carry the line's index, `line`).
Transcripts of one connection read exactly as they always did.
"""

from __future__ import annotations

from lab.roles.common import event_bytes

TYPE_CHECKING = False  # not typing's (see common.py)
if TYPE_CHECKING:
    from typing import Any

    Event = dict[str, Any]


def line_sends(transcript: list[Event]) -> list[int]:
    """The indexes of the `sent` events that count: each line's last attempt (every `sent`, for a
    client that does not number its lines)."""
    last: dict[object, int] = {}
    for i, event in enumerate(transcript):
        if event.get("event") == "sent":
            last[event.get("line", ("sent", i))] = i
    return sorted(last.values())


def reply_to(transcript: list[Event], index: int) -> bytes:
    """What arrived after the `sent` event at `index`, on its connection, before that connection's
    next `sent`."""
    conn = transcript[index].get("conn")
    got = []
    for event in transcript[index + 1 :]:
        if event.get("conn") != conn:
            continue
        if event.get("event") == "sent":
            break
        if event.get("event") == "received":
            got.append(event_bytes(event))
    return b"".join(got)


def received_by_conn(transcript: list[Event]) -> dict[Any, bytes]:
    """The bytes received on each connection, in the order the connections came."""
    got: dict[Any, list[bytes]] = {}
    for event in transcript:
        if event.get("event") == "received":
            got.setdefault(event.get("conn"), []).append(event_bytes(event))
    return {conn: b"".join(parts) for conn, parts in got.items()}


def connections(transcript: list[Event]) -> list[int]:
    """The indexes of the `connected` events: one per connection made."""
    return [i for i, event in enumerate(transcript) if event.get("event") == "connected"]


def on_conn(transcript: list[Event], start: int, conn: Any) -> list[Event]:
    """The events after `start` of connection `conn`, and those of no connection (the role's `end`)."""
    return [e for e in transcript[start + 1 :] if e.get("conn", conn) == conn]


def losses(transcript: list[Event]) -> list[int]:
    """The indexes of the `lost` events: connections a reconnecting client lost before it was done."""
    return [i for i, event in enumerate(transcript) if event.get("event") == "lost"]


def gave_up(transcript: list[Event], start: int = 0) -> Event | None:
    """The `error` of a reconnecting client that spent its budget (reconnect.Redial.give_up), if any."""
    return next((e for e in transcript[start:] if e.get("event") == "error" and e.get("gave_up")), None)


def since_start(transcript: list[Event], event: Event) -> float:
    """When `event` happened, in seconds from the role's start (its transcript's first event), as the
    run's reports show a node's events."""
    start = float(transcript[0].get("t") or 0.0) if transcript else 0.0
    return float(event.get("t") or start) - start


def arrivals(transcript: list[Event]) -> list[tuple[float, int]]:
    """(time, bytes) of each arrival, in order: `received` events (their bytes, or past the
    transcript's data limit their `size`) and the `truncated` event that cut a received chunk."""
    found = []
    for event in transcript:
        kind = event.get("event")
        if kind == "received":
            size = len(event_bytes(event)) if "data" in event or "data_b64" in event else event.get("size", 0)
        elif kind == "truncated" and event.get("of") == "received":
            size = event.get("size", 0)
        else:
            continue
        if isinstance(event.get("t"), int | float) and isinstance(size, int) and size > 0:
            found.append((float(event["t"]), size))
    return found


def goodput(found: list[tuple[float, int]], begin: float, end: float) -> float:
    """Bytes per second that arrived in (begin, end]: each arrival counts at its time."""
    return sum(size for t, size in found if begin < t <= end) / (end - begin)


def answered_spans(transcript: list[Event]) -> list[tuple[float, float]]:
    """When the client was connected and answered, as its own clock stamped it: one span per
    connection, from its `answered` event (taken after the recv that completed its first reply;
    without one, its first bytes received) to its `closing` (taken before close()), a loss, an
    error, or the role's end. A connection the server closed counts only up to the last bytes
    received on it. A connection never answered has none."""
    spans = []
    for index in connections(transcript):
        events = on_conn(transcript, index, transcript[index].get("conn"))
        kinds = [event.get("event") for event in events]
        for kind in ("answered", "received"):
            if kind in kinds:
                spans.append(stamped(events[kinds.index(kind) :]))
                break
    return spans


def stamped(events: list[Event]) -> tuple[float, float]:
    """The span from the first of `events` (see `answered_spans`)."""
    begin = float(events[0].get("t", 0.0))
    after = events[1:]
    by_peer = any(e.get("event") == "closed" and e.get("by") == "peer" for e in after)
    last = begin
    for event in after:
        kind = event.get("event")
        if kind in ("closing", "closed", "error", "end", "lost"):
            return begin, last if by_peer else float(event.get("t", begin))
        if kind == "received":
            last = float(event.get("t", last))
    return begin, max(begin, float(events[-1].get("t", begin)))


def first_unanswered(transcript: list[Event], since: int, lines: range) -> tuple[int, int | None] | None:
    """The first of `lines` (indexes) whose last attempt after index `since` got no whole reply (as
    many line ends as the line had): (the line, the index of that attempt or None when there was
    none); None when each got one."""
    attempts = {transcript[i].get("line"): i for i in line_sends(transcript) if i > since}
    for line in lines:
        index = attempts.get(line)
        if index is None:
            return line, None
        wanted = max(1, event_bytes(transcript[index]).count(b"\n"))
        if reply_to(transcript, index).count(b"\n") < wanted:
            return line, index
    return None
