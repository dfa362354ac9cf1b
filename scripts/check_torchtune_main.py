"""Check porter against a torchtune source tree (its main branch, which CI cannot reach):
every generated recipe next to upstream `tune run`, on the CPU, with loss parity.

    python scripts/check_torchtune_main.py --torchtune-src ~/src/torchtune [--recipes NAME ...]

1. A virtual environment in WORK (default .cache/torchtune-src) with the newest torch
   this machine's index offers (`--torch` to choose) and its torchvision, the torchtune tree, the newest
   torchao with which `import torchtune` works (newest first, `--torchao` to choose),
   porter's other dependencies, and porter itself.
2. `porter demo --prepare-only` (a config for each recipe, with the keys it reads) and
   `porter convert --installed` in that environment.
3. For each training recipe that has a demo config: upstream `tune run` and
   `porter run`, one short epoch each (`--steps`), distributed ones in two gloo
   processes, both sides with porter's CPU fixes (runtime/cpu_compat.py, installed in
   every process by a sitecustomize module when PORTER_CPU_FIXES=1).
4. A markdown table on stdout (the README's "Recipes on CPU" column), and every run's
   last error line; WORK/results.json has it all, and WORK/constraints.txt every
   version the environment had (the repository keeps it as constraints-torchtune-main.txt).

Exit code 0 when every recipe upstream completes also completes under porter with the
same losses; 1 otherwise; 2 for a bad --torchtune-src.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
# Distributed recipes run in two processes; the others in one.
DISTRIBUTED = re.compile(r"distributed")
SITECUSTOMIZE = """import os

if os.environ.get("PORTER_CPU_FIXES") == "1":
    from runtime import cpu_compat

    cpu_compat.apply()
"""


def sh(
    command: List[str], env: Optional[Dict[str, str]] = None, cwd: Optional[Path] = None, timeout: float = 1800
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout
    )


def must(done: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        sys.exit(f"check_torchtune_main: {what} failed:\n" + "\n".join(tail))
    return done


def porter_dependencies() -> List[str]:
    """pyproject's dependencies, but torch, torchtune and torchao: the tree brings those."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return [
        d for d in dependencies if re.split(r"[<>=!~; \[]", d, maxsplit=1)[0] not in ("torch", "torchtune", "torchao")
    ]


def build_environment(work: Path, source: Path, torch_spec: str, torchao_spec: Optional[str]) -> Path:
    venv = work / "venv"
    python = venv / "bin" / "python"
    if not python.exists():
        must(sh([sys.executable, "-m", "venv", venv]), "making the virtual environment")
    pip = [python, "-m", "pip", "install", "-q"]
    # torchtune imports torchvision but does not depend on it (its install guide has
    # users install torch, torchvision and torchao first): one resolve pairs the two.
    must(sh([*pip, torch_spec, "torchvision"]), f"pip install {torch_spec} torchvision")
    must(sh([python, "-c", "import torch, torchvision"]), f"import torch ({torch_spec})")
    must(sh([*pip, source]), f"pip install {source}")
    if torchao_spec:
        must(sh([*pip, torchao_spec]), f"pip install {torchao_spec}")
    else:
        versions = must(sh([python, "-m", "pip", "index", "versions", "torchao"]), "listing torchao's versions").stdout
        found = re.search(r"Available versions: (.*)", versions)
        # --no-deps: an old torchao's own pins must not change the torch just installed
        for version in found.group(1).split(", ") if found else []:
            must(sh([*pip, "--no-deps", f"torchao=={version}"]), f"pip install torchao=={version}")
            if sh([python, "-c", "import torch, torchao, torchtune.training"]).returncode == 0:
                break
        else:
            sys.exit("check_torchtune_main: no torchao release imports with this torchtune")
    # GRPO's reward reads answers with math-verify, an optional dependency of torchtune's
    must(sh([*pip, *porter_dependencies(), "math-verify[antlr4_9_3]"]), "installing porter's dependencies")
    must(sh([*pip, "--no-deps", "-e", REPO]), "installing porter")
    (work / "cpufix").mkdir(exist_ok=True)
    (work / "cpufix" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return python


def versions(python: Path) -> Dict[str, str]:
    code = "import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in ('torch', 'torchtune', 'torchao')}))"
    return json.loads(must(sh([python, "-c", code]), "reading versions").stdout)


def upstream_losses(log_dir: Path) -> Dict[int, float]:
    found: Dict[int, float] = {}
    for log in log_dir.glob("log_*.txt"):
        for line in log.read_text().splitlines():
            step, loss = re.match(r"Step (\d+) \|", line), re.search(r"(?<![\w/])loss:(\S+)", line)
            if step and loss:
                found[int(step.group(1))] = float(loss.group(1))
    return found


def porter_losses(events: Path) -> Dict[int, float]:
    found: Dict[int, float] = {}
    for line in events.read_text().splitlines() if events.exists() else ():
        event = json.loads(line)
        if event["operation"] == "step" and event["data"]["gpu_rank"] == 0:
            found[event["data"]["step_num"]] = event["data"]["step_loss"]
    return found


def last_error(done: subprocess.CompletedProcess, log: Optional[Path] = None) -> str:
    """The error a run ended with: the last `SomeError: message` line, not the launcher's."""
    text = (log.read_text() if log is not None and log.exists() else "") + (done.stderr or "")
    lines = [
        line.strip().removeprefix("[rank0]: ").strip()
        for line in text.splitlines()
        if re.search(r"(^|\s)(\w+(Error|Exception)(: |$)|error: )", line.strip())
        and "ChildFailedError" not in line
        and "elastic" not in line
    ]
    return lines[-1][:200] if lines else f"exit code {done.returncode}"


def check_recipe(python: Path, work: Path, recipe: str, steps: int, env: Dict[str, str]) -> Dict[str, object]:
    name = recipe.replace("/", "-")
    config = work / "demo" / "configs" / f"{recipe}.yaml"
    overrides = ["epochs=1", f"max_steps_per_epoch={steps}"]
    distributed = bool(DISTRIBUTED.search(recipe))
    tune = [
        python.parent / "tune",
        "run",
        *(["--nproc_per_node", "2"] if distributed else []),
        recipe,
        "--config",
        config,
    ]
    upstream_dir = work / "upstream" / name
    job = work / "runs" / "check" / name
    for earlier in (upstream_dir, job):  # a run of an earlier check
        shutil.rmtree(earlier, ignore_errors=True)
    started = time.monotonic()
    theirs = sh([*tune, f"output_dir={upstream_dir}", *overrides], env=env, timeout=900)
    upstream_s = time.monotonic() - started
    porter = [
        python,
        "-m",
        "porter",
        "run",
        recipe,
        "--config",
        config,
        "--job-id",
        name,
        "--user-id",
        "check",
        "--output-root",
        work / "runs",
        "--recipes-dir",
        work / "generated",
        "--no-console",
        *(["--nproc-per-node", "2"] if distributed else []),
        "porter.report=false",
        *overrides,
    ]
    started = time.monotonic()
    ours = sh(porter, env=env, cwd=work, timeout=900)
    porter_s = time.monotonic() - started
    upstream_loss, porter_loss = upstream_losses(upstream_dir / "logs"), porter_losses(job / "events.jsonl")
    parity = None
    if theirs.returncode == 0 and ours.returncode == 0:
        parity = sorted(upstream_loss) == sorted(porter_loss) and all(
            abs(porter_loss[s] - loss) <= 1e-5 * max(1.0, abs(loss)) for s, loss in upstream_loss.items()
        )
    return {
        "recipe": recipe,
        "processes": 2 if distributed else 1,
        "upstream": "completed" if theirs.returncode == 0 else last_error(theirs),
        "porter": "completed" if ours.returncode == 0 else last_error(ours, job / "logs" / "output-node-0.log"),
        "steps": len(porter_loss),
        "parity": parity,
        "upstream_s": round(upstream_s, 1),
        "porter_s": round(porter_s, 1),
    }


def table(results: List[Dict[str, object]], installed: Dict[str, str]) -> str:
    lines = [
        f"torchtune {installed['torchtune']}, torch {installed['torch']}, torchao {installed['torchao']}, CPU",
        "",
        "| recipe | processes | upstream `tune run` | `porter run` | loss parity |",
        "|---|---|---|---|---|",
    ]
    for row in results:
        parity = {True: "same losses", False: "**differ**", None: "-"}[row["parity"]]
        lines.append(f"| `{row['recipe']}` | {row['processes']} | {row['upstream']} | {row['porter']} | {parity} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--torchtune-src", type=Path, required=True, help="a torchtune source tree (its pyproject.toml at the top)"
    )
    parser.add_argument("--work", type=Path, default=REPO / ".cache" / "torchtune-src")
    parser.add_argument("--torch", default="torch", help="pip requirement for torch (default: the newest)")
    parser.add_argument(
        "--torchao", default=None, help="pip requirement for torchao (default: the newest that imports)"
    )
    parser.add_argument("--recipes", nargs="*", help="only these recipes")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    source = args.torchtune_src.resolve()
    if not (source / "pyproject.toml").is_file() or not (source / "torchtune").is_dir():
        print(
            f"check_torchtune_main: {source}: not a torchtune source tree (no pyproject.toml and torchtune/)",
            file=sys.stderr,
        )
        sys.exit(2)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    python = build_environment(work, source, args.torch, args.torchao)
    installed = versions(python)
    print(f"environment: {installed}", file=sys.stderr)
    frozen = must(
        sh([python, "-m", "pip", "freeze", "--exclude", "torchtune", "--exclude", "porter"]), "pip freeze"
    ).stdout
    (work / "constraints.txt").write_text(
        f"# Every package porter needs with torchtune main from source ({source.name}), at the versions\n"
        f"# scripts/check_torchtune_main.py ran with: torch {installed['torch']}, torchao {installed['torchao']}.\n"
        + frozen
    )
    env = {
        **os.environ,
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "TIKTOKEN_CACHE_DIR": "",
        "PYTHONPATH": str(work / "cpufix"),
        "PORTER_CPU_FIXES": "1",
        "PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}",
    }
    must(
        sh([python, "-m", "porter", "demo", "--prepare-only", "--dir", work / "demo"], env=env, cwd=work),
        "porter demo --prepare-only",
    )
    converted = sh(
        [python, "-m", "porter", "convert", "--installed", "-o", work / "generated", "--no-cache"], env=env, cwd=work
    )
    print(converted.stderr.strip().splitlines()[-1] if converted.stderr.strip() else "", file=sys.stderr)
    generated = {
        str(p.relative_to(work / "generated").with_suffix(""))
        for p in (work / "generated").rglob("*.py")
        if p.name != "__init__.py"
    }
    configs = {
        str(p.relative_to(work / "demo" / "configs").with_suffix(""))
        for p in (work / "demo" / "configs").rglob("*.yaml")
    }
    recipes = sorted((set(args.recipes) if args.recipes else generated) & configs)
    results = []
    for recipe in recipes:
        print(f"checking {recipe} ...", file=sys.stderr)
        results.append(check_recipe(python, work, recipe, args.steps, env))
        print(f"  {results[-1]}", file=sys.stderr)
    (work / "results.json").write_text(json.dumps({"versions": installed, "results": results}, indent=2))
    print(table(results, installed))
    failed = [r for r in results if r["upstream"] == "completed" and (r["porter"] != "completed" or not r["parity"])]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
