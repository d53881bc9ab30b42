"""dictionary_learning (Marks et al., dictionary-learning 0.1.0) with its TopKTrainer defaults:
AutoEncoderTopK, Adam at lr 2e-4 / sqrt(dict_size / 2**14), AuxK 1/32, 1,000 warm-up steps and
its threshold tracking; stepped with ``trainer.update(step, x)`` as its ``trainSAE`` does. Its
default 1,000-step warm-up refuses runs of 1,000 steps or fewer, so those warm up over the first
10% of steps instead."""

import common
from dictionary_learning.trainers.top_k import TopKTrainer

a = common.args()
train, held, meta = common.load(a["data"])
F, k, B = meta["d_sae"], meta["k"], meta["batch"]
n_steps = a["epochs"] * (len(train) // B)
trainer = TopKTrainer(
    steps=n_steps,
    activation_dim=train.shape[1],
    dict_size=F,
    k=k,
    layer=15,
    lm_name="smollm2-135m",
    seed=a["seed"],
    device="cpu",
    warmup_steps=1000 if n_steps > 1000 else n_steps // 10,
)
ae = trainer.ae
enc = lambda x: ae.encode(x)
clock = common.Clock(held, n_steps, lambda x: ae(x), enc)
for step, x in enumerate(common.batches(train, B, a["epochs"]), 1):
    trainer.update(step - 1, x)
    clock.tick(step)
common.finish(a, "dictionary_learning", clock, n_steps * B, common.score(held, lambda x: ae(x), enc))
