"""The `porter` command line: it parses arguments and prints results; the work is done
by the modules each command calls.

  app.py                the `porter` group and what every command shares
  convert_commands.py   convert, list, diff, explain, overlay
  contract_commands.py  contract show, contract check
  run_commands.py       run, demo
  job_commands.py       jobs, show, report

Defaults come from `[tool.porter]` in the nearest pyproject.toml (porter/settings.py);
flags override them. Progress bars and colour appear on a terminal only, and colour
never when NO_COLOR is set.
"""

from porter.cli import contract_commands, convert_commands, job_commands, run_commands  # noqa: F401 (they add the commands)
from porter.cli.app import main

__all__ = ["main"]
