"""Installs: the two set-up commands resolve the same way next month (they install the
tested set of every transitive version, constraints.txt, which matches what is installed
here); plain `pip install porter` is the converter alone, with no torch, and converts as
the full install does."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CACHE, REPO, torchtune_wheel
from helpers.job_folders import write_job

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

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


def test_both_constraints_files_pin_what_their_install_needs():
    for target, (extras, _) in constraints.TARGETS.items():
        pinned = [line for line in target.read_text().splitlines() if not line.startswith("#")]
        assert pinned == constraints.pins(extras), target.name
    converter = (REPO / "constraints-converter.txt").read_text()
    assert "libcst==" in converter and not any(
        f"\n{name}==" in converter for name in ("torch", "torchtune", "torchao", "matplotlib")
    )


def test_the_installed_torchtunes_recipes_are_found_without_importing_it():
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from porter.sources import discover; sources = discover([], installed=True); "
            "print(len(sources), sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchtune', 'torchao')))",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    count, imported = found.stdout.split(" ", 1)
    assert int(count) > 10 and imported.strip() == "[]"


@pytest.fixture(scope="module")
def converter_install():
    """A virtual environment with `pip install -c constraints-converter.txt <this checkout>`:
    what a CI check or a pre-commit hook installs. Its dependencies are made once into the
    test cache (under the hash of what decides them); porter itself is reinstalled from the
    checkout on every run, as a wheel, not an editable install."""
    key = hashlib.sha256(
        (REPO / "constraints-converter.txt").read_bytes() + repr(_base_dependencies()).encode()
    ).hexdigest()[:12]
    venv = CACHE / f"converter-venv-{key}"
    python = venv / "bin" / "python"
    if not python.exists():
        partial = venv.with_name(venv.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(partial)], check=True)
        install = [str(partial / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*install, "-c", str(REPO / "constraints-converter.txt"), str(REPO)], check=True, timeout=900)
        partial.rename(venv)  # its scripts name the partial folder's python: porter runs as `python -m porter`
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall", str(REPO)],
        check=True,
        timeout=900,
        capture_output=True,
    )
    return python


def _base_dependencies():
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 2**20


@pytest.mark.slow
def test_plain_pip_install_is_the_converter_without_torch_and_converts_as_the_full_install(converter_install, tmp_path):
    def porter(python, *args, cache):
        return subprocess.run(
            [str(python), "-m", "porter", *map(str, args)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PORTER_CACHE_DIR": str(tmp_path / cache), "NO_COLOR": "1"},
        )

    listed = subprocess.run(
        [str(converter_install), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, check=True
    )
    names = {package["name"].lower() for package in json.loads(listed.stdout)}
    assert not names & {"torch", "torchtune", "torchao", "matplotlib", "numpy"}, names
    assert _size_mb(converter_install.parents[1]) < 150

    for version in ("0.5.0", "0.6.1"):
        wheel = torchtune_wheel(version)
        lite = porter(converter_install, "convert", wheel, "-o", f"lite-{version}", cache="lite-cache")
        full = porter(sys.executable, "convert", wheel, "-o", f"full-{version}", cache="full-cache")
        assert lite.returncode == full.returncode == 0, lite.stderr + full.stderr
        assert lite.stderr.splitlines()[-1] == full.stderr.splitlines()[-1]  # the counts
        files = sorted(
            p.relative_to(tmp_path / f"full-{version}") for p in (tmp_path / f"full-{version}").rglob("*.py")
        )
        assert len(files) > 10
        assert files == sorted(
            p.relative_to(tmp_path / f"lite-{version}") for p in (tmp_path / f"lite-{version}").rglob("*.py")
        )
        for name in files:
            assert (tmp_path / f"lite-{version}" / name).read_bytes() == (
                tmp_path / f"full-{version}" / name
            ).read_bytes()

    # The other converter commands, on the same wheel, and the job views on a job folder.
    wheel = torchtune_wheel("0.6.1")
    recipe = "lora_finetune_single_device"
    unpacked = next((tmp_path / "lite-cache" / "wheels").iterdir()) / "recipes" / f"{recipe}.py"
    for args in (
        ("list", wheel),
        ("explain", unpacked),
        ("diff", unpacked),
        ("diff", "--between", torchtune_wheel("0.5.0"), wheel, recipe),
        ("contract", "show"),
    ):
        done = porter(converter_install, *args, cache="lite-cache")
        assert done.returncode == 0 and done.stdout, (args, done.stderr)
    generated = tmp_path / "lite-0.6.1" / f"{recipe}.py"
    generated.write_text(generated.read_text().replace("class LoRAFinetuneRecipeSingleDevice", "class TeamRecipe", 1))
    overlay = porter(
        converter_install, "overlay", recipe, wheel, "-o", "lite-0.6.1", "--overlays", "overlays", cache="lite-cache"
    )
    assert overlay.returncode == 0 and (tmp_path / "overlays" / f"{recipe}.patch").is_file(), overlay.stderr
    write_job(tmp_path / "runs", "alice", "done", 8, ("job_completed", {}))
    jobs = porter(converter_install, "jobs", "--output-root", tmp_path / "runs", cache="lite-cache")
    assert jobs.returncode == 0 and "done" in jobs.stdout and "completed" in jobs.stdout, jobs.stderr
    show = porter(converter_install, "show", "done", "--output-root", tmp_path / "runs", cache="lite-cache")
    assert show.returncode == 0 and "lora_finetune_single_device" in show.stdout, show.stderr

    # What needs the runtime says what to install, in one line, and exits 2.
    for args, missing in (
        (("run", recipe, "--config", "c.yaml", "--job-id", "j", "--user-id", "u"), "torch, torchtune, torchao"),
        (("demo",), "torch, torchtune, torchao"),
        (("report", "done", "--output-root", tmp_path / "runs"), "matplotlib"),
    ):
        done = porter(converter_install, *args, cache="lite-cache")
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
        assert missing in done.stderr and "pip install 'porter[" in done.stderr
