"""The catalogue of built-in roles: each role declared once, as plain data (standard library only).

A role is a module whose `main(params, transcript) -> exit code` runs it, and one entry here: its
name, its `with:` parameters, whether it is a service or a client, and what its transcript lets a
check judge. Validation (lab/scenario), the plan (lab/plan.py), the runtime (`run_role`), the README's
table and `lab --help` all read this table; nothing else names a role.

How a role's target resolves is part of its parameters' types: a `connect` parameter (NODE:PORT) and
a `url` parameter (http://NODE/...) name a node, and the plan gives the role that node's address
(`TYPES` says what each type becomes). The check catalogue (lab/scenario/checks.py) declares its parameters
with the same `Param`.

NamedTuples rather than dataclasses: this module is imported by every node as it starts (fifty at
once on two cores), and `dataclasses` costs more to import than the whole catalogue.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# The parameter types: how the scenario validates a value (lab/scenario/params.py) and what the plan
# makes of it (lab/plan.py). Shown in the README under the tables.
TYPES: dict[str, str] = {
    "port": "a TCP port, 1..65535",
    "text": "a string",
    "lines": "a string or a list of strings; `{node}` becomes the node's name, `{word}` a word drawn "
             "from the run's seed",
    "bool": "true or false",
    "duration": "seconds, or 500ms, 30s, 2m, 1h; 0 or more",
    "timeout": "a duration greater than 0",
    "pages": "a mapping of path (starting with `/`) to body: a string, or `{bytes: SIZE}` for a generated text "
             "body of that size (2MiB, 512KiB or bytes; MB means MiB, as for `limits:`), sent with its Content-Length",
    "connect": "NODE:PORT or IPv4:PORT; the role gets `host` (the node's address), `port` and `target` (as written)",
    "url": "http://HOST[:PORT][/path], HOST a node or an IPv4 address; the role also gets `host` (the node's "
           "address), `port`, `path` and `host_header`",
    "status": "an HTTP status, 100..599",
    "code": "an exit code, 0..255",
    "hosts": "a number of hosts, from 1 to as many as the check's nodes name",
    "regex": "a regular expression (Python's `re`); `^` and `$` match at every line",
    "rate": "bits per second as tc writes them: 800kbit, 1mbit, 1.5mbit, 1gbit (k = 1000); 8kbit..10gbit",
    "window": "[FROM, TO]: two durations, FROM before TO",
    "percent": "a percentage: 20% or 20; more than 0, at most 100",
}


class Param(NamedTuple):
    """One parameter of a role (`with:`) or of a check (`expect:`): its type, and whether it is
    required or what it defaults to (validation fills defaults in: roles and checks never guess)."""

    type: str  # a key of TYPES
    required: bool = False
    default: Any = None


class Role(NamedTuple):
    """One built-in role."""

    name: str  # as written in `role:`
    module: str  # the runner: a module whose main(params, transcript) returns the exit code
    service: bool  # True: a server, it runs until the end; False: a client, a task the run waits for
    params: dict[str, Param]  # its `with:` parameters, in the order they are checked and shown
    doc: str  # what it does, in one line (README, `lab --help`)
    evidence: str | None = None  # what its transcript lets a check judge (lab/scenario/checks.py: Check.evidence)
    sync: bool = False  # it can be held connected until the lab releases it (`sync`, set by the plan)


ROLES: dict[str, Role] = {role.name: role for role in (
    Role("echo-server", "lab.roles.echo_server", service=True,
         params={"port": Param("port", required=True)},
         doc="sends back whatever each client sends, with a thread per connection"),
    Role("greeting-server", "lab.roles.greeting_server", service=True,
         params={"port": Param("port", required=True), "text": Param("text", default="Thank you for connecting")},
         doc="sends its text (and CRLF) to every client, then closes the connection"),
    Role("http-server", "lab.roles.http_server", service=True,
         params={"port": Param("port", default=80), "pages": Param("pages", default={"/": "<h1>It works</h1>"})},
         doc="serves fixed pages (HTTP/1.1, a thread per connection); any other path is a 404"),
    Role("telnet-client", "lab.roles.telnet_client", service=False,
         params={"connect": Param("connect", required=True), "send": Param("lines", default=[]),
                 "read_greeting": Param("bool", default=False), "hold": Param("duration", default=0.0),
                 "interval": Param("duration", default=0.0), "quiet": Param("timeout", default=0.25),
                 "timeout": Param("timeout", default=5.0), "reconnect": Param("duration", default=0.0)},
         doc="what a person does with telnet: connects, reads what the server says, sends each line "
             "with CRLF and reads its reply; every byte is recorded. With `reconnect: S`, what a "
             "well-written client does instead: a connection refused, lost or unanswered is tried again "
             "(0.2 s growing to 1 s apart), the unanswered line re-sent, until S s pass without one that answers",
         evidence="conversation", sync=True),
    Role("http-get", "lab.roles.http_get", service=False,
         params={"url": Param("url", required=True), "timeout": Param("timeout", default=5.0)},
         doc="one `GET path HTTP/1.1` over a raw socket; records the bytes (past 8 MiB, their sizes and times) "
             "and the parsed response",
         evidence="http"),
)}
