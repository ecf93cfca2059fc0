"""The catalogues in words: the README's tables of roles and checks, and the list `lab --help` ends with.

Both are rendered from the catalogues (lab/roles/catalogue.py, lab/scenario/checks.py), so what the docs say
is what validation, the plan and the runtime read. `inv docs` rewrites the README's tables; a test
checks they are up to date.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

from lab.roles.catalogue import ROLES, TYPES, Param
from lab.scenario.checks import CHECKS, Check

BEGIN = ("<!-- catalogue: generated from lab/roles/catalogue.py and lab/scenario/checks.py by `inv docs`; "
         "do not edit -->")
END = "<!-- catalogue: end -->"


def readme_tables() -> str:
    """The roles, the checks and the parameter types, as Markdown tables."""
    roles = [f"| `{r.name}` | {'service' if r.service else 'client (task)'} | {_params(r.params) or 'none'} | "
             f"{_cell(r.doc)} |" for r in ROLES.values()]
    checks = [f"| `{c.name}` | {_judged(c)} | `{_form(c)}` | {_params(c.params, c.one_of) or 'none'} | "
              f"{_cell(c.doc)} |" for c in CHECKS.values()]
    used = {p.type for r in ROLES.values() for p in r.params.values()}
    used |= {p.type for c in CHECKS.values() for p in c.params.values()}
    types = [f"| *{name}* | {_cell(text)} |" for name, text in TYPES.items() if name in used]
    return "\n".join([
        "| role | runs as | `with:` parameters | what it does |", "| --- | --- | --- | --- |", *roles, "",
        "| check | judges | shortest form | parameters | passes when |", "| --- | --- | --- | --- | --- |", *checks, "",
        "| parameter type | a value is |", "| --- | --- |", *types,
    ])


def update_readme(path: Path) -> bool:
    """Rewrite the generated tables between the README's markers; True if anything changed."""
    text = path.read_text(encoding="utf-8")
    head, begin, rest = text.partition(BEGIN + "\n")
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"{path}: the markers of the generated tables are missing ({BEGIN} ... {END})")
    updated = f"{head}{BEGIN}\n{readme_tables()}\n{END}{tail}"
    if updated != text:
        path.write_text(updated, encoding="utf-8")
    return updated != text


def readme_section(text: str) -> str:
    """What a README holds between the markers (without them)."""
    return text.partition(BEGIN + "\n")[2].partition("\n" + END)[0]


def help_text() -> str:
    """The end of `lab --help`: every built-in role and check, with its parameters (* required)."""
    lines = ["built-in roles (role: NAME, with: {PARAM: VALUE, ...}; * marks a required parameter):"]
    for r in ROLES.values():
        lines += _entry(r.name, f"{'service' if r.service else 'client'}: {r.doc}", "with", r.params)
    lines += ["", "checks (expect: - NAME: NODES, or - NAME: {nodes: NODES, PARAM: VALUE, ...}):"]
    for c in CHECKS.values():
        lines += _entry(c.name, f"on {_judged(c, markdown=False)}: {c.doc}", "parameters", c.params, c.one_of)
    return "\n".join(lines) + "\n"


def _entry(name: str, text: str, label: str, params: Mapping[str, Param], one_of: Iterable[str] = ()) -> list[str]:
    listed = ", ".join(f"{key}{'*' if p.required else ''}" for key, p in params.items())
    if one_of:
        listed += f" (exactly one of {' or '.join(one_of)})"
    body = textwrap.wrap(text, 78, initial_indent=f"  {name:<17}", subsequent_indent=" " * 19)
    return body + ([f"{'':19}{label}: {listed}"] if listed else [])


def _params(params: Mapping[str, Param], one_of: Iterable[str] = ()) -> str:
    either = tuple(one_of)
    shown = "; ".join(_param(key, p, key in either) for key, p in params.items())
    return shown + (f" (exactly one of {' or '.join(f'`{key}`' for key in either)})" if either else "")


def _param(key: str, param: Param, alternative: bool) -> str:
    """`port`: *port*, required / `text`: *text* = `"Thank you"` / `body_contains`: *text*, optional."""
    if param.required:
        return f"`{key}`: *{param.type}*, required"
    if alternative:
        return f"`{key}`: *{param.type}*"
    if param.default is None:
        return f"`{key}`: *{param.type}*, optional"
    return f"`{key}`: *{param.type}* = `{json.dumps(param.default)}`"


def _judged(check: Check, markdown: bool = True) -> str:
    """The nodes a check judges: the roles whose evidence it reads, or any node that runs something."""
    roles = check.roles()
    if roles is None:
        return "any node with a role or run"
    return " or ".join(f"`{name}`" if markdown else name for name in roles) + " nodes"


def _form(check: Check) -> str:
    return f"- {check.name}: {check.long_form or 'NODES'}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
