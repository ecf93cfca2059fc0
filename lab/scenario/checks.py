"""The catalogue of checks: what `expect:` can say, each check declared once, as data.

Validation (lab/scenario/expect.py), the plan (its sync groups), the service watch, the README's
table and `lab --help` read this table. How a check is judged is downstream of the run, in
lab/checks.py (`JUDGES`, under the same names): the declaration is part of the scenario's language,
the judge a pure function of what the nodes did, and the model must not import the outcome.
Parameters use the roles' `Param` types (lab/roles/catalogue.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.roles.catalogue import ROLES, Param


@dataclass(frozen=True)
class Check:
    """One kind of expectation."""

    name: str  # as written in `expect:`
    doc: str  # what holds when it passes, in one line (README, `lab --help`)
    params: dict[str, Param] = field(default_factory=dict)  # besides `nodes`, in the order checked
    evidence: str | None = None  # the roles it judges (Role.evidence); None: any node that runs something
    long_form: str = ""  # how it is written when `- NAME: NODES` cannot be ("": that short form is fine)
    one_of: tuple[str, ...] = ()  # exactly one of these parameters must be given
    syncs: bool = False  # its clients stay connected until all of them were answered (the plan's sync groups)
    covers_exit: bool = False  # it judges how its nodes exited: a crashed service it names is no extra failure

    def roles(self) -> list[str] | None:
        """The roles it judges (whose transcripts give its evidence); None: any node that runs something."""
        return None if self.evidence is None else [r.name for r in ROLES.values() if r.evidence == self.evidence]


CHECKS: dict[str, Check] = {check.name: check for check in (
    Check("echo", "every line sent came back unchanged, byte for byte, as the reply to that line",
          evidence="conversation"),
    Check("greeting", "the text arrived in what the client received",
          {"text": Param("text", required=True)}, evidence="conversation", long_form="{nodes: ..., text: ...}"),
    Check("http", "the last response has the status, and its body contains the text if one is given",
          {"status": Param("status", default=200), "body_contains": Param("text")}, evidence="http"),
    Check("concurrent", "at one moment while each client was connected and answered, at least "
          "`at_least` clients were", {"at_least": Param("hosts", required=True)}, evidence="conversation",
          long_form="{nodes: ..., at_least: N}", syncs=True),
    Check("exit", "the node exited on its own with the code", {"code": Param("code", default=0)}, covers_exit=True),
    Check("output", "the node's output (stdout and stderr) contains the text, or matches the regex",
          {"contains": Param("text"), "regex": Param("regex")},
          long_form="{nodes: ..., contains: ...} or {nodes: ..., regex: ...}", one_of=("contains", "regex")),
    Check("recovers", "the client lost its connection after it had worked (reset, closed, unanswered), once a "
          "fault of the timeline touching it or its server had fired, and, on a later connection, got a reply to "
          "every line still to send (`echo` judges the replies' bytes); needs `reconnect:` on the client",
          evidence="conversation"),
    Check("rate", "the bytes the client received over the window (seconds from its first received byte), "
          "per second, are the rate within the tolerance; the transfer must last past the window's end",
          {"rate": Param("rate", required=True), "window": Param("window", required=True),
           "within": Param("percent", default=20.0)},
          evidence="http", long_form="{nodes: ..., rate: 1mbit, window: [1s, 6s]}"),
)}
