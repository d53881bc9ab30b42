"""sparsify (EleutherAI, eai-sparsify 1.3.3) with its default recipe, as its Trainer runs it:
SparseCoder TopK, FVU loss, no AuxK, b_dec = the first batch's mean, Signum (SignSGD inside
schedule-free averaging, momentum 0.95) at lr 5e-3 / sqrt(num_latents / 2**14), decoder rows
renormalised before each step and the parallel gradient removed. Scored at the averaged weights."""

import common
import torch
from schedulefree import ScheduleFreeWrapper
from sparsify import SparseCoder, SparseCoderConfig
from sparsify.sign_sgd import SignSGD

a = common.args()
train, held, meta = common.load(a["data"])
torch.manual_seed(a["seed"])
F, k, B = meta["d_sae"], meta["k"], meta["batch"]
sae = SparseCoder(train.shape[1], SparseCoderConfig(num_latents=F, k=k), device="cpu", dtype=torch.float32)
opt = ScheduleFreeWrapper(SignSGD([dict(params=sae.parameters(), lr=5e-3 / (F / 2**14) ** 0.5)]), momentum=0.95)
opt.train()
n_steps = a["epochs"] * (len(train) // B)
enc = lambda x: (lambda e: torch.zeros(len(x), F).scatter_(1, e.top_indices, e.top_acts))(sae.encode(x))
clock = common.Clock(held, n_steps, lambda x: sae(x).sae_out, enc)
for step, x in enumerate(common.batches(train, B, a["epochs"]), 1):
    if step == 1:
        sae.b_dec.data = x.mean(0)
    sae.set_decoder_norm_to_unit_norm()
    out = sae(x)
    out.fvu.backward()
    sae.remove_gradient_parallel_to_decoder_directions()
    opt.step()
    opt.zero_grad()
    clock.tick(step, opt.eval, opt.train, sae)
opt.eval()
common.finish(a, "sparsify", clock, n_steps * B, common.score(held, lambda x: sae(x).sae_out, enc))
