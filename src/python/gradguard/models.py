"""Built-in tiny models for the audit and the tests: built from a config with random weights, nothing downloaded."""
from __future__ import annotations

import torch

VOCAB = 128


def tiny_llama(seed: int = 0):
    """Tiny random transformers.LlamaForCausalLM (hidden 32, intermediate 64, 2 layers, 4 heads, 2 kv heads,
    vocab 128), in eval mode so that checks are deterministic."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


def llama_batch(seed: int = 0, batch: int = 2, seq: int = 8) -> dict:
    """input_ids and labels for tiny_llama, so that the output carries .loss."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (batch, seq), generator=g)
    return {"input_ids": ids, "labels": ids.clone()}


# Every linear layer of a Llama block: attention projections and the MLP.
LLAMA_LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# (d_in, d_out) standing for every tiny_llama linear when choosing block sizes (rank_hp): its widths 16, 32 and 64 are
# all multiples of 16, so a block structure that fits 16 x 16 fits each of them.
LLAMA_COMMON_DIMS = (16, 16)
