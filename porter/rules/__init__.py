"""The registry of porting rules: their order, and what each one's output needs of another's.

Rule ids are stable: a team's `skip_rules` keep meaning what they meant. Ids of rules
that were merged away are listed, so a setting that names one gets a useful answer.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, List, Optional, Tuple, Type

from porter.rules.base import PortingRule
from porter.rules.checkpoint_saving import CheckpointSaving
from porter.rules.dataset_injection import DatasetInjection
from porter.rules.epoch_event import EpochEvent
from porter.rules.main_block import MainBlock
from porter.rules.recipe_class import RecipeClass
from porter.rules.recipe_main import RecipeMain
from porter.rules.step_event import StepEvent

# In order: edits anchored on the same statement come in this order (the epoch's save
# hook before its event).
RULES: Tuple[Type[PortingRule], ...] = (
    RecipeClass,
    RecipeMain,
    MainBlock,
    CheckpointSaving,
    EpochEvent,
    StepEvent,
    DatasetInjection,
)

# rule -> {rule it needs: why}. Skipping the second while the first applies is refused.
_BASE = "it calls what RecipeBase provides"
DEPENDS: Dict[Type[PortingRule], Dict[Type[PortingRule], str]] = {
    RecipeClass: {RecipeMain: "a RecipeBase subclass is built by run_recipe only"},
    RecipeMain: {
        RecipeClass: "run_recipe builds RecipeBase subclasses only",
        MainBlock: "the `__main__` block would call recipe_main without the job's arguments",
    },
    CheckpointSaving: {RecipeClass: _BASE},
    EpochEvent: {RecipeClass: _BASE},
    StepEvent: {RecipeClass: _BASE},
    DatasetInjection: {RecipeClass: _BASE},
}

RETIRED = {
    "P007": "P007 epoch-end is part of P005 epoch-event, and its checkpoint hook of P004",
    "P009": "P009 imports is no rule any more: each rule adds the imports it needs",
}


def rule_ids() -> List[str]:
    return [rule.RULE_ID for rule in RULES]


def refused_skip(skipped: FrozenSet[str]) -> Optional[str]:
    """Why skipping the rules `skipped` would leave a broken module, naming every rule
    that would have to be skipped with them; None when nothing would break."""
    first_reason = None
    closure = set(skipped)
    changed = True
    while changed:
        changed = False
        for rule, needs in DEPENDS.items():
            if rule.RULE_ID in closure:
                continue
            needed = next((n for n in needs if n.RULE_ID in closure), None)
            if needed is not None:
                closure.add(rule.RULE_ID)
                changed = True
                first_reason = (
                    first_reason or f"{rule.RULE_ID} {rule.NAME} needs {needed.RULE_ID} {needed.NAME}: {needs[needed]}"
                )
    extra = [rule for rule in RULES if rule.RULE_ID in closure - set(skipped)]
    if not extra:
        return None
    return f"{first_reason}; skip {', '.join(f'{r.RULE_ID} {r.NAME}' for r in extra)} too, or keep what they need"
