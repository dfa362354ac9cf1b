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


def write_model(folder: Path, seed: int = 0, args: Dict[str, object] = MODEL_ARGS) -> Path:
    """Write the randomly initialised model to `folder`; return the weights file."""
    import torch
    from safetensors.torch import save_file
    from torchtune.models.convert_weights import tune_to_hf
    from torchtune.models.llama3_2 import llama3_2

    torch.manual_seed(seed)
    model = llama3_2(**args, tie_word_embeddings=True)
    # The builders leave embeddings at N(0, 1): an initial loss near 62 instead of
    # ln(vocab) = 6.24. Re-initialise every weight as a real checkpoint would have it.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("scale"):  # RMSNorm weights
                param.fill_(1.0)
            else:
                param.normal_(0.0, 0.02)
    head_dim = args["embed_dim"] // args["num_heads"]
    state = tune_to_hf(
        model.state_dict(),
        num_heads=args["num_heads"],
        num_kv_heads=args["num_kv_heads"],
        dim=args["embed_dim"],
        head_dim=head_dim,
    )
    state = {key: value.contiguous() for key, value in state.items() if key != "lm_head.weight"}
    weights = folder / "model.safetensors"
    save_file(state, str(weights), metadata={"format": "pt"})
    config = {
        "architectures": ["LlamaForCausalLM"],
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
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
    return weights
