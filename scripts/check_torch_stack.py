"""Check porter's runtime on a torch / torchtune / torchao stack CI does not run: the
newest torch, torchtune main from a source tree, a newer torchao. Every generated recipe
runs next to upstream `tune run`, on the CPU, with loss parity, and `porter demo` runs.

    python scripts/check_torch_stack.py --torchtune ~/src/torchtune [--recipes NAME ...]
    python scripts/check_torch_stack.py --torchtune torchtune==0.6.1 --torch torch==2.14.1

1. A virtual environment in WORK (default .cache/stacks/<torchtune>-<torch>) with the
   newest torch this machine's index offers (`--torch` to choose) and its torchvision,
   torchtune (`--torchtune`: a source tree, or a pip requirement for a release), the newest
   torchao with which `import torchtune` works (newest first, `--torchao` to choose), and
   porter with `porter[runtime-core]` (the runtime without torch, torchtune and torchao).
2. `porter demo --prepare-only` (a config for each recipe, with the keys it reads) and
   `porter convert --installed` in that environment, then `porter demo` itself.
3. For each training recipe that has a demo config: upstream `tune run` and
   `porter run`, one short epoch each (`--steps`), distributed ones in two gloo
   processes, both sides with porter's CPU fixes (runtime/cpu_compat.py, installed in
   every process by a sitecustomize module when PORTER_CPU_FIXES=1).
4. A markdown table on stdout (the README's columns), and every run's last error line;
   WORK/results.json has it all, and WORK/constraints.txt every version the environment
   had (the repository keeps main's as constraints-torchtune-main.txt).

Exit code 0 when `porter demo` completes and every recipe upstream completes also
completes under porter with the same losses; 1 otherwise; 2 for a bad --torchtune.
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
        sys.exit(f"check_torch_stack: {what} failed:\n" + "\n".join(tail))
    return done


def build_environment(work: Path, torchtune: str, torch_spec: str, torchao_spec: Optional[str]) -> Path:
    venv = work / "venv"
    python = venv / "bin" / "python"
    if not python.exists():
        must(sh([sys.executable, "-m", "venv", venv]), "making the virtual environment")
    pip = [python, "-m", "pip", "install", "-q"]
    # torchtune imports torchvision but does not depend on it (its install guide has
    # users install torch, torchvision and torchao first): one resolve pairs the two.
    must(sh([*pip, torch_spec, "torchvision"]), f"pip install {torch_spec} torchvision")
    must(sh([python, "-c", "import torch, torchvision"]), f"import torch ({torch_spec})")
    must(sh([*pip, torchtune]), f"pip install {torchtune}")
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
            sys.exit("check_torch_stack: no torchao release imports with this torchtune")
    # GRPO's reward reads answers with math-verify, an optional dependency of torchtune's
    # porter's runtime without torch, torchtune and torchao: the stack above stays as it is.
    # GRPO's reward reads answers with math-verify, an optional dependency of torchtune's.
    must(sh([*pip, "-e", f"{REPO}[runtime-core]", "math-verify[antlr4_9_3]"]), "installing porter[runtime-core]")
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
        "--torchtune",
        required=True,
        help="a torchtune source tree (its pyproject.toml at the top), or a pip requirement (torchtune==0.6.1)",
    )
    parser.add_argument("--work", type=Path, help="the environment and runs (default .cache/stacks/...)")
    parser.add_argument("--torch", default="torch", help="pip requirement for torch (default: the newest)")
    parser.add_argument(
        "--torchao", default=None, help="pip requirement for torchao (default: the newest that imports)"
    )
    parser.add_argument("--recipes", nargs="*", help="only these recipes")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    tree = Path(args.torchtune).expanduser()
    if tree.exists():
        if not (tree / "pyproject.toml").is_file() or not (tree / "torchtune").is_dir():
            print(
                f"check_torch_stack: {tree}: not a torchtune source tree (no pyproject.toml and torchtune/)",
                file=sys.stderr,
            )
            sys.exit(2)
        torchtune, described = str(tree.resolve()), f"torchtune from source ({tree.resolve().name})"
    elif args.torchtune.startswith("torchtune"):
        torchtune, described = args.torchtune, args.torchtune
    else:
        print(
            f"check_torch_stack: {args.torchtune}: neither a source tree nor a torchtune requirement", file=sys.stderr
        )
        sys.exit(2)
    stack_name = re.sub(r"[^\w.]+", "-", f"{tree.name if tree.exists() else args.torchtune}-{args.torch}")
    work = (args.work or REPO / ".cache" / "stacks" / stack_name).resolve()
    work.mkdir(parents=True, exist_ok=True)
    python = build_environment(work, torchtune, args.torch, args.torchao)
    installed = versions(python)
    print(f"environment: {installed}", file=sys.stderr)
    frozen = must(
        sh([python, "-m", "pip", "freeze", "--exclude", "torchtune", "--exclude", "porter"]), "pip freeze"
    ).stdout
    (work / "constraints.txt").write_text(
        f"# Every package porter's runtime needs with {described}, at the versions\n"
        f"# scripts/check_torch_stack.py ran with: torch {installed['torch']}, torchao {installed['torchao']}.\n"
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
    # The first set-up command as a user runs it: the runtime's own CPU fixes, no sitecustomize.
    user_env = {key: value for key, value in env.items() if key not in ("PYTHONPATH", "PORTER_CPU_FIXES")}
    demo = sh([python, "-m", "porter", "demo", "--dir", work / "demo-run"], env=user_env, cwd=work, timeout=900)
    demo_result = "completed" if demo.returncode == 0 else last_error(demo)
    print(f"porter demo: {demo_result}", file=sys.stderr)
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
    (work / "results.json").write_text(
        json.dumps({"versions": installed, "demo": demo_result, "results": results}, indent=2)
    )
    print(table(results, installed))
    print(f"\n`porter demo`: {demo_result}")
    failed = [r for r in results if r["upstream"] == "completed" and (r["porter"] != "completed" or not r["parity"])]
    sys.exit(1 if failed or demo_result != "completed" else 0)


if __name__ == "__main__":
    main()
