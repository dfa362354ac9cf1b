"""A second team runtime, shaped like a real platform's (issue 27), written from its
description: its RecipeBase takes the job logger as an annotated `__init__` parameter,
its public wrappers send heartbeats around the recipe's `_` methods, and its
`load_checkpoint` hands `_load_checkpoint` `self.cfg.checkpointer` instead of its
argument. porter reads its contract with `porter contract check` and no flags."""
