"""`porter explain`: what porter sees in a recipe, the reviewer's first question on a fork.

Read from the same RecipeShape every rule reads, then the port's own outcome: the class,
the epoch loop and its count, the step-logging block, every save site and where it goes,
the dataset branch, and the notes the port adds (or why it refuses or skips the file).
"""

from __future__ import annotations

from typing import List


from porter.outcomes import PortResult
from porter.pipeline import port, read_recipe
from porter.settings import Settings
from porter.shape import EPOCH_COUNT, EPOCH_LOOP, RECIPE, RecipeShape, SAVES, SETUP_DATA, STEP_LOGGING
from porter.syntax import node_code

_PARTS = {
    RECIPE: "recipe class",
    EPOCH_LOOP: "epoch loop",
    EPOCH_COUNT: "epoch count",
    STEP_LOGGING: "step logging",
    SAVES: "saves",
    SETUP_DATA: "dataset",
}


def explain(text: str, settings: Settings = Settings()) -> List[str]:
    """Lines that say what porter recognised in `text` and what porting it does."""
    try:
        read = read_recipe(text, settings.contract)
    except Exception:  # a bug in porter: the port's outcome says so, as an internal error
        read = port(text, settings)
    result = read if isinstance(read, PortResult) else port(text, settings, read)
    lines = [f"outcome: {result.status}" + (f" ({result.variant})" if result.variant else "")]
    if isinstance(read, PortResult):  # skipped, or not Python: there is no shape to tell
        return lines + [f"why: {result.reason}"]
    shape = read.shape
    line = shape.index.line
    for part, label in _PARTS.items():
        if part in shape.problems:
            lines.append(f"{label}: not found: line {line(shape.problems[part].node)}: {shape.problems[part].message}")
        elif part in shape.causes:
            lines.append(f"{label}: not read (it needs the {_PARTS.get(shape.causes[part], shape.causes[part])})")
        else:
            lines += _described(shape, part)
    lines += [f"hole: {h['rule']} line {h['line']}: {h['message']}; {h['todo']}" for h in result.holes]
    lines += [f"note: {note}" for note in result.notes]
    if result.status == "failed":
        lines.append(f"refused: {result.reason}")
    lines.append(f"runtime contract: {settings.contract.name}")
    return lines


def _described(shape: RecipeShape, part: str) -> List[str]:
    line = shape.index.line
    if part == RECIPE:
        methods = ", ".join(f"{name} (line {line(method)})" for name, method in shape.methods.items())
        return [
            f"recipe class: {shape.cls.name.value} (line {line(shape.cls)}), family {shape.family}",
            f"methods: {methods}",
        ]
    if part == EPOCH_LOOP:
        epoch = shape.epoch
        where = " -> ".join(method.name.value for method in epoch.path)
        return [
            f"epoch loop: line {line(epoch.loop)} in {where}: `for {epoch.variable} in range({epoch.epochs_run}, {epoch.total_epochs})`"
        ]
    if part == EPOCH_COUNT:
        return [
            f"epoch count: line {line(shape.epoch_count)}: `{node_code(shape.epoch_count).strip()}`; the epoch ends at line {line(shape.epoch_end)}"
        ]
    if part == STEP_LOGGING:
        logging = shape.logging
        what = f"line {line(logging.log_call)} in {logging.method.name.value}, {logging.kind}, step counter `{logging.step_counter}`"
        if logging.every_step:
            what += ", every step (no logging block)"
        if logging.kind == "sft":
            keys = ", ".join(logging.metric_keys) if logging.metric_keys is not None else "keys porter cannot read"
            what += f", metrics `{logging.metric_dict or 'a dict literal'}` ({keys}{', and merged dicts' if logging.merged_metrics else ''})"
            what += f", step time `{logging.step_time}`" if logging.step_time else ", no step clock"
        else:
            what += f", stats `{logging.stats}`"
        return [f"step logging: {what}"]
    if part == SAVES:
        if not shape.saves:
            return ["saves: none in the training loop"]
        return [
            f"save: line {line(site.statement)} in {site.method.name.value}: {site.place} save, `{site.callee}(...)` ({site.kind})"
            for site in shape.saves
        ]
    dataset = shape.dataset
    what = {"list-config": "a ListConfig branch", "single": "one instantiation", "mix": "a mix of datasets"}[
        dataset.kind
    ]
    extra = ", and another set (validation)" if dataset.several_setups else ""
    return [
        f"dataset: line {line(dataset.anchor)} in {dataset.method.name.value}: {what} of `{dataset.cfg_dataset}`{extra}"
    ]
