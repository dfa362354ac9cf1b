"""P003 main-block: the script entry point goes; work it did besides is noted."""

from __future__ import annotations

import textwrap

from helpers.shapes import note_data, notes_of, ported_by, recipe, refusal
from porter.rules import MainBlock

# A whole recipe, before and after this rule alone: the `__main__` block goes, and `import sys`, which only it used.
WHOLE_BEFORE = """\
import sys

from omegaconf import DictConfig
from torchtune import config
from torchtune.recipe_interfaces import FTRecipeInterface


class TinyRecipe(FTRecipeInterface):
    def train(self) -> None:
        for curr_epoch in range(self.epochs_run, self.total_epochs):
            self.epochs_run += 1


@config.parse
def recipe_main(cfg: DictConfig) -> None:
    recipe = TinyRecipe(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.train()
    recipe.cleanup()


if __name__ == "__main__":
    sys.exit(recipe_main())
"""

WHOLE_AFTER = """\
from omegaconf import DictConfig
from torchtune import config
from torchtune.recipe_interfaces import FTRecipeInterface


class TinyRecipe(FTRecipeInterface):
    def train(self) -> None:
        for curr_epoch in range(self.epochs_run, self.total_epochs):
            self.epochs_run += 1


@config.parse
def recipe_main(cfg: DictConfig) -> None:
    recipe = TinyRecipe(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.train()
    recipe.cleanup()
"""


def test_a_whole_recipe_before_and_after():
    assert ported_by(MainBlock, WHOLE_BEFORE) == WHOLE_AFTER
    assert notes_of(MainBlock, WHOLE_BEFORE) == []


MAIN_BLOCK = 'if __name__ == "__main__":\n    sys.exit(recipe_main())\n'


def test_the_main_block_and_the_import_only_it_used_go():
    code = ported_by(MainBlock, recipe())
    assert "__main__" not in code
    assert "import sys" not in code
    assert code.endswith("    recipe.cleanup()\n")


def test_a_plain_main_block_yields_no_note_and_one_that_did_more_does():
    assert notes_of(MainBlock, recipe()) == []
    before = recipe().replace(
        MAIN_BLOCK, 'if __name__ == "__main__":\n    os.environ["NCCL_DEBUG"] = "INFO"\n    sys.exit(recipe_main())\n'
    )
    (note,) = note_data(MainBlock, "import os\n" + before)
    line = ("import os\n" + before).splitlines().index('if __name__ == "__main__":') + 1
    assert (note.rule, note.line, note.kind) == ("P003", line, "dropped")
    assert str(note) == (
        f'P003 line {line}: the `__main__` block also ran `os.environ["NCCL_DEBUG"] = "INFO"`; the job system does not'
    )


def test_every_main_block_goes_however_it_is_nested_or_spelled():
    before = recipe().replace(
        MAIN_BLOCK,
        textwrap.dedent("""\
            try:
                if __name__ == "__main__":
                    sys.exit(recipe_main())
            except KeyboardInterrupt:
                print("interrupted")
            if '__main__' == __name__:
                recipe_main()
            """),
    )
    after = ported_by(MainBlock, before)
    assert after.endswith(
        textwrap.dedent("""\
            try:
                pass
            except KeyboardInterrupt:
                print("interrupted")
            """)
    )
    assert "__main__" not in after
    line = before.splitlines().index('    if __name__ == "__main__":') + 1
    assert notes_of(MainBlock, before) == [
        f"P003 line {line}: this `__main__` block sat inside `try:` (line {line - 1}), which stays without it and runs "
        "at import; check what it did around the entry point"
    ]


def test_a_main_test_in_an_elif_is_refused_with_its_line():
    before = recipe().replace(MAIN_BLOCK, 'if DEBUG:\n    pass\nelif __name__ == "__main__":\n    recipe_main()\n')
    assert "`__main__` block left at line" in refusal(MainBlock, "DEBUG = False\n" + before)
