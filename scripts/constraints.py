"""Write the constraints files: every package an install of porter needs, transitively,
at the version installed here, where the tests passed. constraints.txt for porter[test]
(the runtime and the tests: the README's set-up commands and .ci/run install with
`-c constraints.txt`, so they resolve the same way next month); constraints-converter.txt
for plain `pip install porter`, the converter alone.

Run in a tested environment: python scripts/constraints.py
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from packaging.requirements import Requirement

# Installers' own packages: never pinned for a project.
_TOOLING = {"pip", "setuptools", "wheel"}


def closure(name: str, extras=(), found=None) -> dict:
    """{normalised name: (name, version)} of `name[extras]` and all it needs, as installed."""
    found = {} if found is None else found
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in found and not extras:
        return found
    try:
        distribution = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return found  # a requirement for another platform or Python
    found[key] = (distribution.metadata["Name"], distribution.version.split("+")[0])
    for text in distribution.requires or []:
        requirement = Requirement(text)
        if requirement.marker is None or any(requirement.marker.evaluate({"extra": extra}) for extra in ("", *extras)):
            closure(requirement.name, tuple(requirement.extras), found)
    return found


REPO = Path(__file__).resolve().parents[1]
# file -> (the extras of porter it pins, its header)
TARGETS = {
    REPO / "constraints.txt": (
        ("test",),
        "# Every package porter[test] needs, at the versions the tests passed with\n"
        "# (Python 3.11, the CPU build of torch 2.13.0). Made by scripts/constraints.py.\n",
    ),
    REPO / "constraints-converter.txt": (
        (),
        "# Every package `pip install porter` (the converter and the command line, no torch)\n"
        "# needs, at the versions the tests passed with (Python 3.11). Made by scripts/constraints.py.\n",
    ),
}
TARGET = REPO / "constraints.txt"


def pins(extras=("test",)) -> list:
    """`name==version` of every package porter[extras] needs, as installed here."""
    found = closure("porter", tuple(extras))
    return [
        f"{name}=={version}"
        for key, (name, version) in sorted(found.items())
        if key != "porter" and key not in _TOOLING
    ]


def main() -> None:
    for target, (extras, header) in TARGETS.items():
        lines = pins(extras)
        target.write_text(header + "\n".join(lines) + "\n")
        print(f"wrote {len(lines)} pins to {target}")


if __name__ == "__main__":
    main()
