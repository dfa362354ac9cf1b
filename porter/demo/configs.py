"""One config per generated recipe, pointing at the demo's models, tokenizer and data.

Each is a plain torchtune config: `tune run <recipe> --config <file>` takes it as is
(where upstream runs on a CPU at all; README, "Recipes on CPU"), and so does `porter run`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable, Dict

from porter.demo.model import MODEL_ARGS
from porter.demo.tokenizer import special_token_id

Config = Dict[str, object]

LORA = {
    "lora_attn_modules": ["q_proj", "v_proj", "output_proj"],
    "apply_lora_to_mlp": True,
    "lora_rank": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
}


def _checkpointer(folder: Path, model_type: str = "LLAMA3_2", output_dir: str = "${output_dir}") -> Config:
    return {
        "_component_": "torchtune.training.FullModelHFCheckpointer",
        "checkpoint_dir": str(folder),
        "checkpoint_files": ["model.safetensors"],
        "recipe_checkpoint": None,
        "output_dir": output_dir,
        "model_type": model_type,
    }


def _data(root: Path, kind: str) -> Config:
    common = {"source": "json", "data_files": str(root / "data" / _DATA_FILES[kind]), "split": "train"}
    if kind == "instruct":
        return {"_component_": "torchtune.datasets.alpaca_dataset", **common, "packed": False}
    if kind == "preference":
        return {"_component_": "torchtune.datasets.preference_dataset", **common}
    return {"_component_": "torchtune.datasets.text_completion_dataset", **common, "column": "prompt", "add_eos": False}


_DATA_FILES = {"instruct": "instruct.json", "preference": "preference_messages.jsonl", "prompt": "prompts.jsonl"}


def _base(root: Path, name: str) -> Config:
    return {
        "output_dir": str(root / "output" / name),
        "model": {"_component_": "torchtune.models.llama3_2.llama3_2", **MODEL_ARGS},
        "tokenizer": {
            "_component_": "torchtune.models.llama3.llama3_tokenizer",
            "path": str(root / "model" / "tokenizer.model"),
            "special_tokens_path": str(root / "model" / "special_tokens.json"),
            "max_seq_len": MODEL_ARGS["max_seq_len"],
        },
        "checkpointer": _checkpointer(root / "model"),
        "resume_from_checkpoint": False,
        "dataset": _data(root, "instruct"),
        "seed": 1234,
        "shuffle": True,
        "batch_size": 4,
        "optimizer": {"_component_": "torch.optim.AdamW", "lr": 3e-3, "weight_decay": 0.01, "fused": False},
        "lr_scheduler": {
            "_component_": "torchtune.training.lr_schedulers.get_cosine_schedule_with_warmup",
            "num_warmup_steps": 2,
        },
        "loss": {"_component_": "torchtune.modules.loss.CEWithChunkedOutputLoss"},
        "epochs": 2,
        "max_steps_per_epoch": 10,
        "gradient_accumulation_steps": 1,
        "clip_grad_norm": None,
        "compile": False,
        "device": "cpu",
        "dtype": "fp32",
        "enable_activation_checkpointing": False,
        "enable_activation_offloading": False,
        "metric_logger": {
            "_component_": "torchtune.training.metric_logging.DiskLogger",
            "log_dir": "${output_dir}/logs",
        },
        "log_every_n_steps": 1,
        "log_peak_memory_stats": False,
        # torchtune main's recipes read it (`utils.get_logger(cfg.log_level)`); 0.6.1's do not
        "log_level": "INFO",
        "profiler": {"_component_": "torchtune.training.setup_torch_profiler", "enabled": False},
    }


def _full(config: Config, root: Path) -> Config:
    config["optimizer_in_bwd"] = False
    return config


def _lora(config: Config, root: Path) -> Config:
    config["model"] = {**config["model"], "_component_": "torchtune.models.llama3_2.lora_llama3_2", **LORA}
    # Saves the merged model too. On CPU upstream's merge writes into the live model
    # (`v.cpu()` is no copy there) and corrupts training after the first save; porter's
    # runtime guards against it (runtime/cpu_compat.py), `tune run` does not.
    config["save_adapter_weights_only"] = False
    return config


def _distributed(config: Config, root: Path) -> Config:
    config["fsdp_cpu_offload"] = False
    return config


def _distillation(config: Config, root: Path) -> Config:
    config["teacher_model"] = {"_component_": "torchtune.models.llama3_2.llama3_2", **MODEL_ARGS}
    config["teacher_checkpointer"] = _checkpointer(root / "teacher")
    config["kd_loss"] = {"_component_": "torchtune.modules.loss.ForwardKLWithChunkedOutputLoss"}
    config["kd_ratio"] = 0.5
    return config


def _preference(config: Config, root: Path) -> Config:
    config["dataset"] = _data(root, "preference")
    config["loss"] = {"_component_": "torchtune.rlhf.loss.DPOLoss", "beta": 0.1}
    return config


def _reference(config: Config, root: Path) -> Config:
    config["ref_checkpointer"] = _checkpointer(root / "model")
    return config


def _qat(config: Config, root: Path) -> Config:
    config["quantizer"] = {
        "_component_": "torchtune.training.quantization.Int8DynActInt4WeightQATQuantizer",
        "groupsize": 32,
    }
    return config


def _multi_dataset(config: Config, root: Path) -> Config:
    del config["dataset"]
    config["dataloader"] = {
        "shuffle": True,
        "collate_fn": "torchtune.data.padded_collate_sft",
        "parallel_method": "thread",
        "num_workers": 0,
        "pin_memory": False,
        "packed": False,
    }
    config["datasets"] = [
        {
            "source": "json",
            "data_files": str(root / "data" / "instruct.json"),
            "split": "train",
            "transform": {"_component_": "torchtune.data.AlpacaToMessages", "train_on_input": False},
            "weight": 1.0,
        },
        {
            "source": "json",
            "data_files": str(root / "data" / "chat.jsonl"),
            "split": "train",
            "transform": {"_component_": "torchtune.data.OpenAIToMessages", "train_on_input": False},
            "weight": 1.0,
        },
    ]
    return config


def _ppo(config: Config, root: Path) -> Config:
    for key in ("model", "checkpointer", "epochs", "max_steps_per_epoch", "lr_scheduler", "clip_grad_norm"):
        config.pop(key)
    config.update(
        {
            "dataset": _data(root, "prompt"),
            "policy_model": {"_component_": "torchtune.models.llama3_2.llama3_2", **MODEL_ARGS},
            "reward_and_value_model": {
                "_component_": "torchtune.models.mistral._component_builders.mistral_classifier",
                "num_classes": 1,
                **{
                    k: MODEL_ARGS[k]
                    for k in (
                        "vocab_size",
                        "num_layers",
                        "num_heads",
                        "num_kv_heads",
                        "embed_dim",
                        "intermediate_dim",
                        "max_seq_len",
                    )
                },
            },
            "checkpointer": _checkpointer(root / "model", output_dir="${output_dir}/policy"),
            "ref_policy_checkpointer": _checkpointer(root / "model", output_dir="${output_dir}/ref_policy"),
            "value_checkpointer": _checkpointer(root / "reward", "REWARD", "${output_dir}/value"),
            "reward_checkpointer": _checkpointer(root / "reward", "REWARD", "${output_dir}/reward"),
            "num_steps": 16,
            "ppo_epochs": 1,
            "ppo_batch_size": 4,
            "forward_batch_size": 4,
            "optimizer_in_bwd": False,
            "enable_kv_cache": True,
            "max_generated_tokens": 8,
            "temperature": 0.7,
            "top_k": None,
            "min_response_length": 2,
            "penalise_no_eos": True,
            "reward_penalty": -3,
            "stop_token_ids": [special_token_id("<|end_of_text|>", MODEL_ARGS["vocab_size"])],
            "whiten_rewards": False,
            "gamma": 1,
            "lmbda": 0.95,
            "loss": {
                "_component_": "torchtune.rlhf.loss.PPOLoss",
                "epsilon": 0.2,
                "value_coeff": 0.1,
                "value_clip_range": 0.2,
            },
            "kl_coeff": 0.01,
        }
    )
    return config


def _grpo(config: Config, root: Path) -> Config:
    """torchtune main's GRPO (dev): a gsm8k-shaped prompt set, a reference model, a few
    short generations a step."""
    config["dataset"] = {
        "_component_": "torchtune.dev.grpo.gsm8k.gsm8k_dataset",
        "source": "json",
        "data_files": str(root / "data" / "reasoning.json"),
        "name": None,  # gsm8k's hub config name; a json source has none
        "split": "train",
    }
    # Its reasoning preamble alone is about 300 tokens of the demo's tokenizer.
    config["model"] = {**config["model"], "max_seq_len": 1024}
    config["ref_checkpointer"] = {**config["checkpointer"], "output_dir": "${output_dir}/ref"}
    config["loss"] = {"_component_": "torchtune.dev.grpo.loss.GRPOSimpleLoss", "kl_coeff": 0.01, "epsilon": 0.2}
    config.update(
        epochs=1,
        num_steps=4,
        batch_size=1,
        grpo_samples=2,
        forward_batch_size=1,
        max_generated_tokens=8,
        top_k=None,
        temperature=1.0,
        ppo_epochs=1,
        clip_grad_norm=1.0,
        save_every_n_epochs=1,
    )
    return config


Shaper = Callable[[Config, Path], Config]


def _chain(*shapers: Shaper) -> Shaper:
    def shape(config: Config, root: Path) -> Config:
        for shaper in shapers:
            config = shaper(config, root)
        return config

    return shape


RECIPE_CONFIGS: Dict[str, Shaper] = {
    "full_finetune_single_device": _full,
    "lora_finetune_single_device": _lora,
    "full_finetune_distributed": _chain(_full, _distributed),
    "lora_finetune_distributed": _chain(_lora, _distributed),
    "knowledge_distillation_single_device": _chain(_lora, _distillation),
    "knowledge_distillation_distributed": _chain(_lora, _distillation, _distributed),
    "lora_dpo_single_device": _chain(_lora, _preference),
    "lora_dpo_distributed": _chain(_lora, _preference, _distributed),
    "full_dpo_distributed": _chain(_full, _preference, _reference, _distributed),
    "ppo_full_finetune_single_device": _ppo,
    "qat_distributed": _chain(_full, _qat, _distributed),
    "qat_lora_finetune_distributed": _chain(_lora, _qat, _distributed),
    "qat_single_device": _chain(_full, _qat),  # torchtune main's; 0.6.1 has none
    "dev/early_exit_finetune_distributed": _chain(_full, _distributed),
    "dev/lora_finetune_distributed_multi_dataset": _chain(_lora, _multi_dataset, _distributed),
    "dev/grpo_full_finetune_distributed": _chain(_full, _distributed, _grpo),  # runs on main; 0.6.1 lacks torchtune.dev
}


def demo_configs(root: Path) -> Dict[str, Config]:
    """Config of each recipe, by recipe name."""
    return {name: shape(copy.deepcopy(_base(root, name)), root) for name, shape in RECIPE_CONFIGS.items()}
