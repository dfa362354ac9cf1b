"""The porting rules, one module each, in the order they apply."""

from porter.rules.checkpoint_saving import CheckpointSaving
from porter.rules.dataset_injection import DatasetInjection
from porter.rules.epoch_end import EpochEnd
from porter.rules.epoch_timer import EpochTimer
from porter.rules.imports import Imports
from porter.rules.main_block import MainBlock
from porter.rules.recipe_class import RecipeClass
from porter.rules.recipe_main import RecipeMain
from porter.rules.step_event import StepEvent

RULES = (
    RecipeClass,
    RecipeMain,
    MainBlock,
    CheckpointSaving,
    EpochTimer,
    StepEvent,
    EpochEnd,
    DatasetInjection,
    Imports,
)
