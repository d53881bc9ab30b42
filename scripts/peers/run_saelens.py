"""SAELens (sae-lens 6.54.12) with its defaults: TopKTrainingSAE (k, AuxK) trained by its own
SAETrainer on our batches (Adam at lr 3e-4, constant schedule, no warm-up, gradient clipping 1)."""

import common
import torch
from sae_lens.config import SAETrainerConfig
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.training.sae_trainer import SAETrainer

a = common.args()
train, held, meta = common.load(a["data"])
torch.manual_seed(a["seed"])
F, k, B = meta["d_sae"], meta["k"], meta["batch"]
n_steps = a["epochs"] * (len(train) // B)
sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=train.shape[1], d_sae=F, k=k, device="cpu"))
trainer = SAETrainer(
    SAETrainerConfig(
        total_training_samples=n_steps * B, train_batch_size_samples=B, lr_end=3e-4 / 10
    ),  # what its runner config fills in
    sae,
    common.batches(train, B, a["epochs"]),
)
rec = lambda x: sae.decode(sae.encode(x))
clock = common.Clock(held, n_steps, rec, sae.encode)
inner = trainer._train_step


def step_and_tick(*args, **kw):
    out = inner(*args, **kw)
    clock.tick(trainer.n_training_steps + 1)
    return out


trainer._train_step = step_and_tick
trainer.fit()
sae.eval()
common.finish(a, "saelens", clock, n_steps * B, common.score(held, rec, sae.encode))
