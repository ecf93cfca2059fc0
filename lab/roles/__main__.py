"""`python3 -m lab.roles ROLE --params JSON --transcript PATH`: a role as a program (for containers).

Exits with the role's exit code; bad arguments give a message on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from lab.roles import run_role
from lab.roles.catalogue import ROLES


def parse_args(argv: list[str]) -> tuple[str, dict[str, object], str]:
    parser = argparse.ArgumentParser(prog="python3 -m lab.roles", description="Run one built-in lab role.")
    parser.add_argument("role", choices=sorted(ROLES), help="the role to run")
    parser.add_argument("--params", default="{}", help="the role's resolved parameters, as a JSON object")
    parser.add_argument("--transcript", required=True, help="where to write the JSON-lines transcript")
    args = parser.parse_args(argv)
    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as exc:
        parser.error(f"--params is not valid JSON: {exc}")
    if not isinstance(params, dict):
        parser.error("--params must be a JSON object")
    return args.role, params, args.transcript


def main(argv: list[str] | None = None) -> int:
    role, params, transcript = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run_role(role, params, transcript)
    except OSError as exc:  # e.g. the transcript cannot be written
        print(f"lab.roles: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
