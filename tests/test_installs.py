"""The two set-up commands resolve the same way next month: they install the tested set
of every transitive version, constraints.txt, which matches what is installed here."""

from __future__ import annotations

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import constraints  # noqa: E402


def test_constraints_pin_every_package_porter_needs_at_the_installed_version():
    # Fails when a dependency is added, dropped or upgraded without `python scripts/constraints.py`.
    pinned = [line for line in constraints.TARGET.read_text().splitlines() if not line.startswith("#")]
    assert pinned == constraints.pins()
    assert any(line.startswith("torch==2.13.0") for line in pinned)


def test_the_readme_and_ci_install_torch_first_then_the_constrained_set():
    readme_commands = (REPO / "README.md").read_text().split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    ci_command = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert len(readme_commands) == 2 and readme_commands[1] == ci_command
    for command in readme_commands:
        assert command.startswith("pip install torch==2.13.0 && pip install -c constraints.txt -e ")
