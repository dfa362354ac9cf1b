"""P008 dataset-injection: `_setup_data` uses the job's dataset when one is given.

The `if isinstance(cfg_dataset, ListConfig):` branch of `_setup_data` becomes the
`elif` of a new first branch that takes the dataset the runtime injected
(`self.dataset`) and reads `packed` from the dataset config where the recipe uses
`packed`. Older recipes (torchtune 0.1) have no ListConfig branch: their one
`ds = config.instantiate(cfg_dataset, ...)` becomes the `else` of that branch. Recipes
that also build a validation set with `_setup_data` (torchtune main) take the job's
dataset only for the training set's config: the one the runtime says it replaced
(`self.job_dataset_config`), or, under a contract without it, `self.cfg.dataset`.

A recipe that mixes datasets (dev/lora_finetune_distributed_multi_dataset) loops over
its dataset configs, filling a `datasets` and a `weights` dict. Right above that loop
the job's dataset becomes the only entry, and the loop is given no configs.

The job's dataset replaces the recipe's *builder*, not what follows it: a branch that
post-processes the set it built (`ds = Wrapper(ds)`, `ds.add_log_probs(...)`) would be
bypassed, so the port is refused naming it. Every other set the recipe builds from the
config node the job's dataset replaces (a validation set from an edited `cfg_dataset`,
a `config.instantiate(cfg.dataset, ...)` elsewhere) is noted: with a job dataset, it is
built from the job's dataset config.
"""

from __future__ import annotations

import ast
from typing import List, Optional, Tuple

import libcst as cst

import libcst.matchers as m

from porter.dataset_flow import bound_names, read_names
from porter.edits import Edits
from porter.index import own_expressions
from porter.errors import HoleSite, PortError
from porter.outcomes import CHANGED, Note
from porter.rules.base import PortingRule
from porter.shape import DatasetSetup, RecipeShape, SETUP_DATA, SETUP_DATA_METHODS
from porter.syntax import single_small_statement
from porter.syntax import block_statements, is_docstring, iter_statements, METHOD_BODY_DEPTH, node_code
from porter.verify import ported_method


class DatasetInjection(PortingRule):
    RULE_ID = "P008"
    NAME = "dataset-injection"
    DESCRIPTION = "In _setup_data, use the injected dataset first; the config's branch becomes its elif."
    NEEDS = (SETUP_DATA,)
    TEMPLATE = "dataset_injection.py.j2"

    def find(self, shape: RecipeShape) -> DatasetSetup:
        anchors = shape.dataset
        if anchors.kind == "list-config":
            for branch in (anchors.anchor, anchors.anchor.orelse):
                processing = _post_processing(list(block_statements(branch)), anchors.dataset_variable)
                if processing is not None:
                    raise PortError(
                        self.RULE_ID,
                        f"`{node_code(processing).strip().splitlines()[0]}` post-processes the dataset the config "
                        f"builds, inside the branch the job's dataset replaces, which would bypass it: move it after "
                        f"the `if`/`else`, where every dataset `{anchors.dataset_variable}` goes through it",
                        processing,
                    )
        if anchors.kind != "mix":
            self._check_what_the_injected_path_would_lose(shape, anchors)
        if anchors.kind != "mix" and anchors.several_setups and self._training_config(shape) is None:
            raise PortError(
                self.RULE_ID,
                f"`{anchors.method.name.value}` builds several sets; porter tells the training set by the config node "
                f"the runtime replaced, which the runtime contract `{self.contract.name}` gives neither as "
                f"`self.job_dataset_config` nor as `self.cfg.dataset` (with a `{anchors.method.name.value}(cfg.dataset, ...)` call)",
                anchors.method,
            )
        return anchors

    def _check_what_the_injected_path_would_lose(self, shape: RecipeShape, anchors: DatasetSetup) -> None:
        """The post-conditions of replacing the builder, checked on the source: a
        PortError (a hole, or a refusal without assisted ports) where one fails."""
        variable = anchors.dataset_variable
        for stmt in anchors.replaced:
            for assign in m.findall(stmt, m.Assign(targets=[m.AssignTarget(target=m.Name(variable))])):
                wrapped = _wrapped_builder(assign.value)
                if wrapped is not None:
                    raise PortError(
                        self.RULE_ID,
                        f"`{node_code(assign.value).strip().splitlines()[0]}` wraps the dataset the config builds in "
                        f"`{wrapped}(...)`, which the job's dataset would bypass: build the set first, then wrap "
                        f"`{variable}` after the statements that make it",
                        stmt,
                    )
        body = list(block_statements(anchors.method))
        last = _position(body, anchors.replaced[-1])
        later = [shape.index.ast_node(stmt) for stmt in body[last + 1 :]]
        lost = bound_names(shape.index.ast_node(stmt) for stmt in anchors.replaced) - {variable}
        lost -= {"packed"} if anchors.assigns_packed else set()
        for name in sorted(lost & read_names(later)):
            reader = next(stmt for stmt in body[last + 1 :] if name in read_names([shape.index.ast_node(stmt)]))
            raise PortError(
                self.RULE_ID,
                f"`{name}` is bound only in what the job's dataset replaces (line "
                f"{shape.index.line(anchors.replaced[0])}) and read at line {shape.index.line(reader)}: with a job "
                f"dataset it would be unbound; bind it before or after the statements that make `{variable}`",
                reader,
            )
        shared = _shared_configs(shape, anchors.method.name.value, anchors.cfg_dataset)
        if shared is not None:
            config, calls = shared
            raise PortError(
                self.RULE_ID,
                f"`{anchors.method.name.value}` is called with `{config}` at lines "
                f"{', '.join(str(shape.index.line(c)) for c in calls)}: splits of one config would all get the job's "
                "dataset (the model would train on the validation slice); give each split its own config node",
                calls[1],
            )

    def hole(self, shape: RecipeShape) -> Optional[HoleSite]:
        """A `_setup_data` porter cannot inject into safely gets a guard at its top that
        raises only when a job injects a dataset: without one the recipe trains on its
        config's dataset, as before."""
        methods = [shape.methods[name] for name in SETUP_DATA_METHODS if name in shape.methods]
        if not methods or not self.contract.provides("dataset"):
            return None
        body = [stmt for stmt in block_statements(methods[0]) if not is_docstring(stmt)]
        if not body:
            return None
        return HoleSite(
            before=body[0],
            depth=METHOD_BODY_DEPTH,
            condition="self.dataset",
            todo=f"make `{methods[0].name.value}` use the job's dataset (`self.dataset`) in place of the one the config "
            "builds, delete this guard, and keep the edit with `porter overlay`",
        )

    def _training_config(self, shape: RecipeShape):
        """The expression of the config node the job's dataset replaced, as this
        contract gives it; None when it gives none."""
        if self.contract.provides("job_dataset_config"):
            return "self.job_dataset_config"
        calls = shape.index.statements_using_self(shape.cls, [shape.dataset.method.name.value])
        if self.contract.provides("cfg") and any(
            m.findall(call, m.Attribute(value=m.Name("cfg"), attr=m.Name("dataset"))) for call in calls
        ):
            return "self.cfg.dataset"
        return None

    def edit(self, shape: RecipeShape, anchors: DatasetSetup, edits: Edits) -> None:
        if anchors.kind == "mix":
            edits.insert_before(
                anchors.anchor,
                self.snippet("mix_branch", depth=METHOD_BODY_DEPTH, cfg_datasets=anchors.cfg_dataset, **anchors.mix),
            )
            return
        (injected,) = self.snippet(
            "branch",
            depth=METHOD_BODY_DEPTH,
            cfg_dataset=anchors.cfg_dataset,
            variable=anchors.dataset_variable,
            assigns_packed=anchors.assigns_packed,
            training_config=self._training_config(shape) if anchors.several_setups else None,
        )

        def inject(node: cst.BaseStatement) -> cst.If:
            original = node.with_changes(leading_lines=())
            # An `if` chain becomes an `elif`; the statements that make the set, the `else`.
            orelse = (
                original
                if anchors.becomes_elif
                else cst.Else(body=cst.IndentedBlock(body=[original, *anchors.replaced[1:]]))
            )
            return injected.with_changes(leading_lines=node.leading_lines, orelse=orelse)

        edits.change(anchors.anchor, inject)
        for stmt in anchors.replaced[1:]:
            edits.remove(stmt)

    def notes(self, shape: RecipeShape, anchors: DatasetSetup) -> List[Note]:
        line = shape.index.line(anchors.anchor)
        if anchors.kind == "mix":
            return [self.note(line, CHANGED, "the job's dataset replaces every dataset of the mix")]
        notes = [
            self.note(
                shape.index.line(stmt),
                CHANGED,
                f"`{node_code(stmt).strip().splitlines()[0]}` builds from `{config}`, the config node the job's dataset "
                "replaces: with a job dataset, it is built from the job dataset's config",
            )
            for stmt, config in _other_builds(shape, anchors)
        ]
        for call in _builder_calls(anchors):
            extra = [node_code(arg).strip().rstrip(",") for arg in _extra_arguments(call)]
            if extra:
                notes.append(
                    self.note(
                        line,
                        CHANGED,
                        f"the recipe builds its dataset with {', '.join(f'`{a}`' for a in extra)}; the job's "
                        "dataset is built from its own config without them",
                    )
                )
        notes += [
            self.note(
                shape.index.line(stmt),
                CHANGED,
                f"`{node_code(stmt).strip().splitlines()[0]}` changes the set after it is built: it changes the job's "
                "dataset too",
            )
            for stmt in _changes_after(anchors)
        ]
        if anchors.kind == "flow":
            notes.append(
                self.note(
                    line,
                    CHANGED,
                    f"`{anchors.dataset_variable}`, the set the data loader receives (line "
                    f"{shape.index.line(anchors.loader)}), is made by line"
                    f"{'s' if len(anchors.replaced) > 1 else ''} "
                    f"{', '.join(str(shape.index.line(stmt)) for stmt in anchors.replaced)}: with a job dataset, "
                    f"{'they do' if len(anchors.replaced) > 1 else 'it does'} not run",
                )
            )
        if anchors.several_setups:
            notes.append(
                self.note(
                    line,
                    CHANGED,
                    f"`{anchors.method.name.value}` also builds another set (validation): the job's dataset replaces the "
                    f"training set only, the set whose config is `{self._training_config(shape)}`",
                )
            )
        return notes

    def check(self, ported: ast.Module, shape: RecipeShape, anchors: DatasetSetup) -> List[str]:
        method = ported_method(ported, shape, anchors.method)
        if method is not None and any(
            isinstance(node, ast.Attribute)
            and node.attr == "dataset"
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
            for node in ast.walk(method)
        ):
            return []
        return [f"`{anchors.method.name.value}` does not take the job's dataset"]


_INSTANTIATE = m.Call(func=m.Attribute(value=m.Name("config"), attr=m.Name("instantiate")))
# What a dataset builder is given besides its config: the tokenizer, however passed.
_TOKENIZER = m.Attribute(value=m.Name("self"), attr=m.Name("_tokenizer")) | m.Name("tokenizer")


def _position(body: List[cst.BaseStatement], stmt: cst.BaseStatement) -> int:
    return next(i for i, candidate in enumerate(body) if candidate is stmt)


def _wrapped_builder(value: cst.BaseExpression) -> Optional[str]:
    """The callee of `Wrapper(config.instantiate(...), ...)`: a call, not a builder, given a
    builder's result directly."""
    if not isinstance(value, cst.Call) or m.matches(value, _INSTANTIATE):
        return None
    if any(m.matches(arg.value, _INSTANTIATE) for arg in value.args):
        return node_code(value.func).strip()
    return None


def _builder_calls(anchors: DatasetSetup) -> List[cst.Call]:
    return [call for stmt in anchors.replaced for call in m.findall(stmt, _INSTANTIATE)]


def _extra_arguments(call: cst.Call) -> List[cst.Arg]:
    """A builder's arguments beyond its config (the first) and the tokenizer."""
    return [
        arg
        for arg in call.args[1:]
        if not (m.matches(arg.value, _TOKENIZER) and (arg.keyword is None or arg.keyword.value == "tokenizer"))
    ]


def _changes_after(anchors: DatasetSetup) -> List[cst.BaseStatement]:
    """Statements after the set is made that rebind it from itself (`ds = Subset(ds, ...)`)
    or call one of its methods (`ds.shuffle()`)."""
    body = list(block_statements(anchors.method))
    variable = m.Name(anchors.dataset_variable)
    found = []
    for stmt in body[_position(body, anchors.replaced[-1]) + 1 :]:
        small = single_small_statement(stmt)
        rebinds = (
            isinstance(small, cst.Assign)
            and any(m.matches(t.target, variable) for t in small.targets)
            and m.findall(small.value, variable)
        )
        calls_on_it = isinstance(small, cst.Expr) and m.matches(small.value, m.Call(func=m.Attribute(value=variable)))
        if rebinds or calls_on_it:
            found.append(stmt)
    return found


def _shared_configs(shape: RecipeShape, name: str, parameter: str) -> Optional[Tuple[str, List[cst.BaseStatement]]]:
    """A config expression two calls of `self.<name>(...)` pass as its dataset config
    (`parameter`), with their statements."""
    by_config: dict = {}
    for stmt in shape.index.statements_using_self(shape.cls, [name]):
        for call in shape.index.self_calls(stmt, name):
            given = [k.value for k in call.keywords if k.arg == parameter]
            first = call.args[0] if call.args else (given[0] if given else None)
            if first is not None:
                by_config.setdefault(ast.unparse(first), []).append(stmt)
    return next(((config, calls) for config, calls in by_config.items() if len(calls) > 1), None)


def _post_processing(branch: List[cst.BaseStatement], variable: str) -> Optional[cst.BaseStatement]:
    """The first statement of a branch that uses the dataset it built, once built (but
    for reading `packed`, which the injected branch sets itself)."""
    built = False
    for stmt in branch:
        small = single_small_statement(stmt)
        targets = [t.target for t in small.targets] if isinstance(small, cst.Assign) else []
        reads = bool(m.findall(small.value if isinstance(small, cst.Assign) else stmt, m.Name(variable)))
        if built and reads and not any(m.matches(t, m.Name("packed")) for t in targets):
            return stmt
        built = built or any(m.matches(t, m.Name(variable)) for t in targets)
    return None


def _other_builds(shape: RecipeShape, anchors: DatasetSetup) -> List[Tuple[cst.BaseStatement, str]]:
    """Each statement outside what the job's dataset replaces whose own code instantiates
    from the config node it replaces: `cfg_dataset` in `_setup_data`, `cfg.dataset`
    elsewhere. Read from the stdlib ast of the statements that read `config` (one scan of
    the module's index, not a libcst search per statement)."""
    replaced = {id(stmt) for root in anchors.replaced for stmt in (root, *(s for s, _ in iter_statements(root)))}
    found = []
    for method in shape.methods.values():
        config = anchors.cfg_dataset if method is anchors.method else "cfg.dataset"
        for stmt in shape.index.statements_using_name(method, "config"):
            node = shape.index.ast_node(stmt)
            if id(stmt) in replaced or node is None:
                continue
            if any(
                isinstance(call, ast.Call)
                and ast.unparse(call.func) == "config.instantiate"
                and call.args
                and ast.unparse(call.args[0]) in (config, "self." + config)
                for part in own_expressions(node)
                for call in ast.walk(part)
            ):
                found.append((stmt, config))
    return found
