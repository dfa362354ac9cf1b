"""A tiny Llama-3.2-shaped model in Hugging Face format (config.json + model.safetensors).

About 156k parameters: it trains on a CPU in milliseconds a step, and loads through
torchtune's FullModelHFCheckpointer with model_type LLAMA3_2, the path users take.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

MODEL_ARGS: Dict[str, object] = dict(
    vocab_size=512,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    embed_dim=64,
    max_seq_len=256,
    intermediate_dim=256,
)


def _initialise(model, seed: int) -> None:
    """N(0, 0.02) weights, norms at 1. The builders leave embeddings at N(0, 1): an
    initial loss near 62 instead of ln(vocab) = 6.24."""
    import torch

    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("scale"):  # RMSNorm weights
                param.fill_(1.0)
            else:
                param.normal_(0.0, 0.02)


def _save(folder: Path, state: Dict[str, object], architecture: str, args: Dict[str, object]) -> Path:
    from safetensors.torch import save_file

    weights = folder / "model.safetensors"
    save_file({key: value.contiguous() for key, value in state.items()}, str(weights), metadata={"format": "pt"})
    head_dim = args["embed_dim"] // args["num_heads"]
    config = {
        "architectures": [architecture],
        "model_type": "llama",
        "hidden_size": args["embed_dim"],
        "intermediate_size": args["intermediate_dim"],
        "num_attention_heads": args["num_heads"],
        "num_hidden_layers": args["num_layers"],
        "num_key_value_heads": args["num_kv_heads"],
        "head_dim": head_dim,
        "max_position_embeddings": args["max_seq_len"],
        "vocab_size": args["vocab_size"],
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "tie_word_embeddings": architecture == "LlamaForCausalLM",
        "torch_dtype": "float32",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
    return weights


def _hf_args(args: Dict[str, object]) -> Dict[str, int]:
    return dict(
        num_heads=args["num_heads"],
        num_kv_heads=args["num_kv_heads"],
        dim=args["embed_dim"],
        head_dim=args["embed_dim"] // args["num_heads"],
    )


def write_model(folder: Path, seed: int = 0, args: Dict[str, object] = MODEL_ARGS) -> Path:
    """A causal LM (the policy, student or teacher) with tied embeddings."""
    from torchtune.models.convert_weights import tune_to_hf
    from torchtune.models.llama3_2 import llama3_2

    model = llama3_2(**args, tie_word_embeddings=True)
    _initialise(model, seed)
    state = tune_to_hf(model.state_dict(), **_hf_args(args))
    state.pop("lm_head.weight", None)  # tied to the embeddings
    return _save(folder, state, "LlamaForCausalLM", args)


def write_reward_model(folder: Path, seed: int = 2, args: Dict[str, object] = MODEL_ARGS) -> Path:
    """A one-output classifier (reward and value model for PPO), HF's REWARD layout."""
    from torchtune.models.mistral._component_builders import mistral_classifier
    from torchtune.rlhf.utils import reward_tune_to_hf

    keys = ("vocab_size", "num_layers", "num_heads", "num_kv_heads", "embed_dim", "intermediate_dim", "max_seq_len")
    model = mistral_classifier(num_classes=1, **{key: args[key] for key in keys})
    _initialise(model, seed)
    hf_args = _hf_args(args)
    hf_args.pop("head_dim")
    state = reward_tune_to_hf(model.state_dict(), **hf_args)
    return _save(folder, state, "MistralForSequenceClassification", args)
