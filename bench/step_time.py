"""Median training-step time of a generated recipe over upstream's, on the same config.

One process, pinned to one core, runs in turn ROUNDS times: the upstream recipe (as
`tune run` runs it: class, setup, train, cleanup), the upstream recipe again (the noise
floor), the generated recipe through `recipe_main` and `run_recipe`, and the generated
recipe with a sink that takes 100 ms per event. All runs share one process so they
share its memory layout and caches; per-process noise on a shared VM is larger than
the overhead being measured. Steps are timed by the same metric logger in every run
(bench/timing.py), in wall-clock and training-thread CPU time; step i trains on the
same batch in every run, so step times are compared pairwise.

Targets: generated/upstream <= 1.02; with the 100 ms sink <= 1.05.

    python bench/step_time.py [--recipe lora_finetune_single_device] [--rounds 5] [key=value ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="lora_finetune_single_device")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40, help="steps per epoch (2 epochs)")
    parser.add_argument("--demo-dir", type=Path, default=REPO / ".cache" / "bench" / "demo")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides for every run")
    args = parser.parse_args()
    os.environ.update({"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TIKTOKEN_CACHE_DIR": ""})
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {os.cpu_count() - 1})

    import torch
    from omegaconf import OmegaConf

    from porter.convert import convert
    from porter.demo import prepare
    from porter.sources import discover, installed_recipes_dir
    from runtime import cpu_compat
    import timing

    torch.set_num_threads(1)
    demo = prepare(args.demo_dir)
    work = Path(tempfile.mkdtemp(prefix="porter-bench-"))
    convert(discover([], installed=True), work / "generated")
    upstream_module = load(installed_recipes_dir() / f"{args.recipe}.py", "upstream_recipe")
    cpu_compat.apply()  # what porter run does on CPU; it only touches saving here
    generated_module = load(work / "generated" / f"{args.recipe}.py", "generated_recipe")
    (upstream_class,) = [
        value
        for value in vars(upstream_module).values()
        if isinstance(value, type) and value.__module__ == "upstream_recipe" and hasattr(value, "train")
    ]
    base = OmegaConf.merge(
        OmegaConf.load(demo.config(args.recipe)),
        OmegaConf.from_dotlist([f"max_steps_per_epoch={args.steps}", "epochs=2", *args.overrides]),
    )

    def config(name: str, porter: dict):
        cfg = OmegaConf.merge(base, {"output_dir": str(work / name), "porter": porter})
        cfg.metric_logger = {"_component_": "timing.StepTimer", "log_dir": str(work / name / "logs")}
        return cfg

    def upstream(name: str):
        cfg = config(name, {})
        del cfg["porter"]
        recipe = upstream_class(cfg=cfg)
        recipe.setup(cfg=cfg)
        recipe.train()
        timer = recipe._metric_logger
        recipe.cleanup()
        return timer

    def generated(name: str, sinks: list):
        cfg = config(name, {"output_root": str(work / "runs"), "console": False, "sinks": sinks})
        timing.StepTimer.last = None
        generated_module.recipe_main(name, "bench", cfg, None)
        return timing.StepTimer.last

    variants = {
        "upstream": upstream,
        "upstream again": upstream,
        "generated": lambda name: generated(name, []),
        "generated + 100 ms sink": lambda name: generated(name, [{"_component_": "timing.SlowSink"}]),
    }
    runs = {variant: [] for variant in variants}
    order = list(variants)
    for round_ in range(args.rounds):
        order = order[1:] + order[:1]  # no variant always runs first or last
        for index, variant in enumerate(order):
            timer = variants[variant](f"r{round_}-v{index}")
            runs[variant].append(timer.step_times(skip=2))

    def ratio(variant: str, clock: str) -> float:
        return statistics.median(
            ours / theirs
            for ours_run, theirs_run in zip(runs[variant], runs["upstream"], strict=False)
            for ours, theirs in zip(ours_run[clock], theirs_run[clock], strict=False)
        )

    print(f"recipe: {args.recipe}  rounds: {args.rounds}  steps per run: {len(runs['upstream'][0]['wall'])}")
    for variant, measured in runs.items():
        wall = statistics.median(t for run in measured for t in run["wall"])
        cpu = statistics.median(t for run in measured for t in run["cpu"])
        print(f"  {variant:<26} median step {wall * 1000:8.3f} ms wall, {cpu * 1000:8.3f} ms CPU")
    targets = {"upstream again": None, "generated": 1.02, "generated + 100 ms sink": 1.05}
    for variant, target in targets.items():
        wall, cpu = ratio(variant, "wall"), ratio(variant, "cpu")
        goal = f"target <= {target}" if target else "the noise floor"
        print(f"ratio {variant + ' / upstream:':<36} {wall:.3f} wall, {cpu:.3f} CPU ({goal})")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
