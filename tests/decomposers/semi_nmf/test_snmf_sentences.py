"""``sentence_activations`` (batched, right-padded) against each text run alone through a full
forward with ``run_with_cache``."""

import torch

from interp.decomposers.semi_nmf.sentences import sentence_activations

SITE = "blocks.1.mlp.hook_post"


def test_batched_sentences_equal_each_text_alone(tiny_model):
    texts = ["The river ran.", "A young astronomer counted seventeen copper kettles today.", "Rain", "Hi there"]
    acts, grid = sentence_activations(tiny_model, texts, SITE, batch_size=3)
    rows = []
    for t in texts:
        ids = [tiny_model.tokenizer.bos_token_id] + tiny_model.tokenizer(t, add_special_tokens=False)["input_ids"]
        _, cache = tiny_model.bridge.run_with_cache(torch.tensor([ids]), names_filter=[SITE])
        rows.append(cache[SITE][0, 1:])  # BOS left out
    torch.testing.assert_close(acts, torch.cat(rows).float(), rtol=1e-4, atol=1e-5)
    assert len(grid.index) == len(acts)
