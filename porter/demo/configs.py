"""One config per generated recipe, pointing at the demo's model, tokenizer and data.

Each is a plain torchtune config: `tune run <recipe> --config <file>` takes it as is,
and so does `porter run`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable, Dict

from porter.demo.model import MODEL_ARGS

Config = Dict[str, object]


def _base(root: Path, name: str) -> Config:
    model_dir = root / "model"
    return {
        "output_dir": str(root / "output" / name),
        "model": {"_component_": "torchtune.models.llama3_2.llama3_2", **MODEL_ARGS},
        "tokenizer": {
            "_component_": "torchtune.models.llama3.llama3_tokenizer",
            "path": str(model_dir / "tokenizer.model"),
            "special_tokens_path": str(model_dir / "special_tokens.json"),
            "max_seq_len": MODEL_ARGS["max_seq_len"],
        },
        "checkpointer": {
            "_component_": "torchtune.training.FullModelHFCheckpointer",
            "checkpoint_dir": str(model_dir),
            "checkpoint_files": ["model.safetensors"],
            "recipe_checkpoint": None,
            "output_dir": "${output_dir}",
            "model_type": "LLAMA3_2",
        },
        "resume_from_checkpoint": False,
        "dataset": {
            "_component_": "torchtune.datasets.alpaca_dataset",
            "source": "json",
            "data_files": str(root / "data" / "instruct.json"),
            "split": "train",
            "packed": False,
        },
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
        "profiler": {"_component_": "torchtune.training.setup_torch_profiler", "enabled": False},
    }


def _lora(config: Config) -> Config:
    config["model"] = {
        **config["model"],
        "_component_": "torchtune.models.llama3_2.lora_llama3_2",
        "lora_attn_modules": ["q_proj", "v_proj", "output_proj"],
        "apply_lora_to_mlp": True,
        "lora_rank": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
    }
    # Saves the merged model too. On CPU upstream's merge writes into the live model
    # (`v.cpu()` is no copy there) and corrupts training after the first save; porter's
    # runtime guards against it (runtime/cpu_compat.py), `tune run` does not.
    config["save_adapter_weights_only"] = False
    return config


def _distributed(config: Config) -> Config:
    config["fsdp_cpu_offload"] = False
    return config


def _full(config: Config) -> Config:
    config["optimizer_in_bwd"] = False
    return config


RECIPE_CONFIGS: Dict[str, Callable[[Config], Config]] = {
    "full_finetune_single_device": _full,
    "lora_finetune_single_device": _lora,
    "full_finetune_distributed": lambda c: _distributed(_full(c)),
    "lora_finetune_distributed": lambda c: _distributed(_lora(c)),
}


def demo_configs(root: Path) -> Dict[str, Config]:
    """Config of each recipe, by recipe name."""
    return {name: shape(copy.deepcopy(_base(root, name))) for name, shape in RECIPE_CONFIGS.items()}
