"""The lab's clock, as every report shows times: seconds from the moment the run began.

That moment is `RunResult.t0` (time.monotonic(), which node states and phases count from); what
the nodes and the captures stamp is the wall clock (time.time(): transcript events, pcap records),
put on the lab's clock by `RunResult.wall0`, the wall clock read at that same moment. One function,
so that a connection in the timeline, a request in its table and a SYN on the wire line up.
"""

from __future__ import annotations

from lab.outcome import RunResult


def lab_time(result: RunResult, wall: float) -> float:
    """A wall-clock stamp (time.time(), on the lab's host) in s on the lab's clock (0 = the run began).
    A stamp from another host is first moved by that host's offset (`outcome.on_lab_clock`)."""
    return wall - result.wall0
