"""Recipe families: what kind of data a recipe trains on, told from the names its code
uses, or from its config's loss.

One definition for the converter (`porter list` labels each recipe) and the runtime
(`porter run` refuses a config whose loss is for another family, and a dataset of
another kind). Imports nothing heavy, so the converter can read it without loading torch.
"""

from __future__ import annotations

import ast
from typing import AbstractSet, Dict, Optional, Set, Tuple

SFT, PREFERENCE, RL = "sft", "preference", "rl"
FAMILY_NAMES = {SFT: "fine-tuning", PREFERENCE: "preference (DPO)", RL: "RL (PPO, GRPO)"}
# Names a recipe's code uses that say its family; fine-tuning is the rest.
_MARKS = {PREFERENCE: {"padded_collate_dpo"}, RL: {"PPOStats", "GRPOStats"}}
# The dataset kinds (runtime/datasets.py) each family trains on.
FAMILY_KINDS: Dict[str, Tuple[str, ...]] = {SFT: ("chat", "instruct"), PREFERENCE: ("preference",), RL: ("prompt",)}
# Words in a loss's class name that say its family; fine-tuning is the rest.
_LOSS_WORDS = {RL: ("GRPO", "PPO"), PREFERENCE: ("DPO", "RSO", "SimPO", "IPO")}


def code_names(tree: ast.AST) -> Set[str]:
    """The names a module's code uses: its variables and the attributes it reads."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
    return names


def recipe_family(names: AbstractSet[str]) -> str:
    """The family of a recipe whose code uses `names`."""
    return next((family for family, marks in _MARKS.items() if marks & names), SFT)


def loss_family(loss_component: Optional[str]) -> str:
    """The family of recipes a config's loss (`torchtune.rlhf.loss.DPOLoss`) is for."""
    name = (loss_component or "").rsplit(".", 1)[-1]
    return next((family for family, words in _LOSS_WORDS.items() if any(w in name for w in words)), SFT)
