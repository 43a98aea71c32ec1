"""Write docs/cli.md, the CLI reference, from the argument parser (ember.cli.build_parser).

    python scripts/cli_reference.py            rewrite docs/cli.md
    python scripts/cli_reference.py --check    exit 1 if docs/cli.md is not what the parser gives

tests/test_cli_reference.py runs the check in CI, so the reference cannot drift from the parser.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "cli.md"


def _option(action: argparse.Action) -> str:
    names = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.metavar or action.dest}`"
    if action.nargs != 0 and action.option_strings:
        meta = action.metavar or (action.dest.upper() if not action.choices else "{" + ",".join(
            map(str, action.choices)) + "}")
        names += f" {meta}"
    return names


def reference() -> str:
    import os
    from ember.cli import build_parser
    os.environ["COLUMNS"] = "100"   # argparse wraps usage lines at the terminal's width: a fixed one here
    parser = build_parser()
    lines = ["# The `ember` command", "",
             "Generated from the argument parser by `python scripts/cli_reference.py`; a CI test checks it is "
             "current. `python -m ember` is the same command.", ""]
    top = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    if top:
        lines += ["Options before the command:", ""]
        lines += [f"- {_option(a)}: {(a.help or '').strip()}" for a in top]
        lines.append("")
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in subs._choices_actions}
    for name, sub in subs.choices.items():
        lines += [f"## ember {name}", "", (helps.get(name) or "").strip(), "", "```", sub.format_usage().strip()
                  .replace("usage: ", ""), "```", ""]
        for a in sub._actions:
            if a.dest == "help":
                continue
            text = (a.help or "").strip()
            if a.default not in (None, False, argparse.SUPPRESS) and a.option_strings and "default" not in text:
                text += f" (default {a.default})"
            lines.append(f"- {_option(a)}{': ' + text if text else ''}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    text = reference()
    if sys.argv[1:] == ["--check"]:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run python scripts/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    if sys.argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
