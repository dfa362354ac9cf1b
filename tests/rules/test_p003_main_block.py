"""P003 main-block: the script entry point goes; work it did besides is noted."""

from __future__ import annotations

from shapes import notes_of, ported_by, recipe, refusal
from porter.rules import MainBlock

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
    (note,) = notes_of(MainBlock, "import os\n" + before)
    assert note.startswith("P003 line ")
    assert note.endswith('the `__main__` block also ran `os.environ["NCCL_DEBUG"] = "INFO"`; the job system does not')


def test_two_main_blocks_are_refused():
    assert refusal(MainBlock, recipe() + "\n" + MAIN_BLOCK).endswith("P003 found more than one `__main__` block")
