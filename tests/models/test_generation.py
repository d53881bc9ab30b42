"""Generation through the path steering takes: ``hf_model.generate`` with the KV cache, left-padded.

Checked token for token against a plain loop that recomputes the whole sequence at every step
without a cache (the independent reference). On today's transformers the per-layer cache arrives
as ``cache=`` and the bridge read only ``past_key_values=``: generation with the cache then
attended to the current token alone. The tiny Llama runs always; the built-in models are slow.
"""

import pytest
import torch

from interp.evals.steering import generate, steer
from interp.models import load

PROMPTS = [
    "The capital of France is",
    "Once upon a time",
    "def add(a, b):\n    return",
    "In 1905, Albert Einstein published four papers that",
]
N_NEW = 32


def _left_pad(model, prompts):
    tok = model.tokenizer
    seqs = [([tok.bos_token_id] if tok.bos_token_id is not None else []) + tok(p).input_ids for p in prompts]
    seqs = [s if s[:2] != s[:1] * 2 else s[1:] for s in seqs]  # one BOS even if the tokenizer adds one
    width = max(map(len, seqs))
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs])
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
    return ids, mask, pad


@torch.no_grad()
def _greedy_no_cache(model, ids, mask, n_new, eos=None, pad=None):
    """Recompute every position at every step (no cache). With ``eos``, a row that produced it
    continues with ``pad`` (as ``generate`` does); without, the raw argmax stream."""
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    for _ in range(n_new):
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        logits = model.hf_model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits
        nxt = logits[:, -1].argmax(-1)
        if eos is not None:
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            done |= nxt == eos
        ids, mask = torch.cat([ids, nxt[:, None]], 1), torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    return ids


@torch.no_grad()
def _plain_hf(model, ids, mask, pad, **sampling):
    """The same weights loaded as a plain ``AutoModelForCausalLM`` (no bridge), KV-cached ``generate``."""
    from transformers import AutoModelForCausalLM

    from interp.models.loader import _resolve

    plain = AutoModelForCausalLM.from_pretrained(
        _resolve(model.spec)[0], dtype=torch.float32, attn_implementation="sdpa"
    ).eval()
    out = plain.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=N_NEW,
        use_cache=True,
        pad_token_id=pad,
        eos_token_id=model.tokenizer.eos_token_id,
        **sampling,
    )
    return model.tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)


def _check_plain_and_sampled(model):
    """Greedy and sampled harness output equal a plain HF model's (the independent reference the
    bug report used); a steered run with alpha 0 equals the unsteered one when sampling too."""
    ids, mask, pad = _left_pad(model, PROMPTS)
    assert generate(model, PROMPTS, max_new_tokens=N_NEW, temperature=0) == _plain_hf(
        model, ids, mask, pad, do_sample=False
    )
    sampled = generate(model, PROMPTS, max_new_tokens=N_NEW, seed=3, temperature=1.0, top_k=30, top_p=0.9)
    torch.manual_seed(3 * 100_003)  # generate seeds batch b with seed * 100_003 + b
    assert sampled == _plain_hf(model, ids, mask, pad, do_sample=True, temperature=1.0, top_k=30, top_p=0.9)
    direction = torch.randn(model.d_model, generator=torch.Generator().manual_seed(1))
    with steer(model, direction, "blocks.0.hook_resid_post", alpha=0.0):
        assert generate(model, PROMPTS, max_new_tokens=N_NEW, seed=3, temperature=1.0, top_k=30, top_p=0.9) == sampled


def _check(model):
    ids, mask, pad = _left_pad(model, PROMPTS)
    assert len(set(mask.sum(1).tolist())) > 1, "prompts must have different lengths"
    with torch.no_grad():
        cached = model.hf_model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=N_NEW,
            min_new_tokens=N_NEW,
            do_sample=False,
            use_cache=True,
            pad_token_id=pad,
            eos_token_id=None,
        )
    ref = _greedy_no_cache(model, ids, mask, N_NEW)
    assert torch.equal(cached, ref), "KV-cached greedy generation differs from the no-cache loop"

    # The steering harness: unsteered output is the model's plain greedy output (EOS honoured) ...
    texts = generate(model, PROMPTS, max_new_tokens=N_NEW, temperature=0)
    ref = _greedy_no_cache(model, ids, mask, N_NEW, eos=model.tokenizer.eos_token_id, pad=pad)
    assert texts == model.tokenizer.batch_decode(ref[:, ids.shape[1] :], skip_special_tokens=True)
    # ... and a steered run with alpha = 0 is the unsteered run.
    direction = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0))
    with steer(model, direction, f"blocks.{model.n_layers // 2}.hook_resid_post", alpha=0.0):
        assert generate(model, PROMPTS, max_new_tokens=N_NEW, temperature=0) == texts
    return texts


def test_tiny_llama_cached_generation_matches_no_cache(tiny_model):
    _check(tiny_model)


def test_tiny_llama_generation_matches_plain_hf(tiny_model):
    _check_plain_and_sampled(tiny_model)


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["smollm2-135m", "gemma3-270m"])
def test_builtin_cached_generation_matches_no_cache(spec):
    model = load(spec, device="cpu")
    texts = _check(model)
    _check_plain_and_sampled(model)
    assert all(t.strip() for t in texts)
    assert not any("-----" in t for t in texts), texts
