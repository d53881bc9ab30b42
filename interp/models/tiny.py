"""A tiny randomly initialised Llama and a byte-level tokenizer, built from a config offline.

Unit tests run every stage on this model in seconds. Initialisation is seeded, so the spec
``tiny-llama`` always denotes the same weights and can be recorded in manifests like a real model.
"""

from __future__ import annotations

from typing import Any

import torch

SPECIALS = ["<bos>", "<eos>", "<pad>"]


def byte_tokenizer() -> Any:
    """A byte-level tokenizer (256 byte tokens + bos/eos/pad) with character offsets."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(SPECIALS + sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


def tiny_llama(
    n_layers: int = 2,
    d_model: int = 64,
    d_mlp: int = 128,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    seed: int = 0,
) -> tuple[Any, Any]:
    """Return (LlamaForCausalLM, tokenizer) with seeded random weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = byte_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=d_model,
        intermediate_size=d_mlp,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv_heads,
        max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    model.config.architectures = ["LlamaForCausalLM"]
    return model.eval(), tok
