"""The one-layer modular-addition transformer of the LIB paper, its full-batch trainer and its cut.

Follows Bushnaq et al. 2024 (LIB, arXiv 2405.10928; code ApolloResearch/rib) which reuse Nanda et
al.'s grokking model: inputs ``[a, b, =]`` (``=`` is token ``p``), one attention layer (4 heads x
32) and one ReLU MLP (512), **no LayerNorm**, vocabulary ``p + 1``, logits read at the last
position, target ``(a + b) mod p``; p = 113, 30 % of all pairs for training, full-batch AdamW.

The model is functional (a dict of tensors) so several seeds train at once under ``torch.func.vmap``
and so LIB can cut it into modules. Training is exact but cheap: in a one-layer model only the last
position's query, attention output, MLP and unembedding reach the loss, and keys/values depend only
on (token, position), so they are computed once per step for the 3 x 114 possible inputs and
gathered (``forward``). ``modules`` gives the LIB cut on arbitrary residual activations with biases
folded into a constant coordinate (the last one), exactly as rib's folded-bias modules do.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
from jaxtyping import Float, Int
from safetensors.torch import save_file

from interp._io import (
    current_dir,
    file_digest,
    folder_lock,
    load_safetensors,
    read_json,
    replace_dir,
    write_json_atomic,
)


@dataclasses.dataclass(frozen=True)
class ModAddConfig:
    p: int = 113
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    frac_train: float = 0.3
    lr: float = 1e-3
    weight_decay: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    max_epochs: int = 60000
    stop_test_acc: float | None = 0.999  # stop once test accuracy stays above this ...
    stop_patience: int = 1000  # ... for this many epochs (None: run max_epochs)
    max_minutes: float | None = None  # wall-clock budget: stop (and record it) when exceeded
    grokfast_alpha: float | None = None  # Grokfast-EMA (Lee et al. 2024): g += lamb * EMA_alpha(g)
    grokfast_lamb: float = 2.0
    seed: int = 0
    data_seed: int = 0  # the train/test split (shared across model seeds)


def init_params(cfg: ModAddConfig, seed: int) -> dict[str, torch.Tensor]:
    """TransformerLens-style init: normal(0, 0.8/sqrt(d_model)) weights, zero biases."""
    g = torch.Generator().manual_seed(seed)
    V, d, H, dh, m = cfg.p + 1, cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp
    std = 0.8 / math.sqrt(d)
    shapes = {
        "W_E": (V, d),
        "W_pos": (3, d),
        "W_Q": (H, d, dh),
        "W_K": (H, d, dh),
        "W_V": (H, d, dh),
        "W_O": (H, dh, d),
        "W_in": (d, m),
        "W_out": (m, d),
        "W_U": (d, V),
    }
    params = {k: torch.randn(s, generator=g) * std for k, s in shapes.items()}
    params |= {
        "b_Q": torch.zeros(H, dh),
        "b_K": torch.zeros(H, dh),
        "b_V": torch.zeros(H, dh),
        "b_O": torch.zeros(d),
        "b_in": torch.zeros(m),
        "b_out": torch.zeros(d),
        "b_U": torch.zeros(V),
    }
    return params


def dataset(cfg: ModAddConfig) -> tuple[Int[torch.Tensor, "N 3"], Int[torch.Tensor, "N"], torch.Tensor]:
    """All p^2 inputs ``[a, b, p]``, their labels, and a boolean train mask (``frac_train``)."""
    a, b = torch.meshgrid(torch.arange(cfg.p), torch.arange(cfg.p), indexing="ij")
    tokens = torch.stack([a.flatten(), b.flatten(), torch.full((cfg.p**2,), cfg.p)], dim=1)
    labels = (tokens[:, 0] + tokens[:, 1]) % cfg.p
    perm = torch.randperm(cfg.p**2, generator=torch.Generator().manual_seed(cfg.data_seed))
    train = torch.zeros(cfg.p**2, dtype=torch.bool)
    train[perm[: int(round(cfg.frac_train * cfg.p**2))]] = True
    return tokens, labels, train


def forward(params: dict[str, torch.Tensor], tokens: Int[torch.Tensor, "N 3"]) -> Float[torch.Tensor, "N V"]:
    """Last-position logits, using per-(token, position) key/value tables (exact, see module doc)."""
    embed = params["W_E"][None] + params["W_pos"][:, None]  # [3, V, d]: every (position, token)
    k_tab = torch.einsum("pvd,hde->pvhe", embed, params["W_K"]) + params["b_K"]
    v_tab = torch.einsum("pvd,hde->pvhe", embed, params["W_V"]) + params["b_V"]
    pos = torch.arange(3, device=tokens.device)
    k, v = k_tab[pos, tokens], v_tab[pos, tokens]  # [N, 3, H, dh]
    x = embed[2, tokens[:, 2]]  # [N, d], the last position's residual
    q = torch.einsum("nd,hde->nhe", x, params["W_Q"]) + params["b_Q"]
    resid_mid = x + _attend(params, q, k, v) + params["b_O"]
    return _unembed(params, _mlp(params, resid_mid, 1.0), 1.0)


def _attend(params, q, k, v):
    scores = torch.einsum("nhe,nshe->nhs", q, k) / math.sqrt(q.shape[-1])
    z = torch.einsum("nhs,nshe->nhe", scores.softmax(-1), v)
    return torch.einsum("nhe,hed->nd", z, params["W_O"])


def _mlp(params, resid_mid, c):
    hidden = torch.relu(resid_mid @ params["W_in"] + c * params["b_in"])
    return resid_mid + hidden @ params["W_out"] + c * params["b_out"]


def _unembed(params, resid_post, c):
    return resid_post @ params["W_U"] + c * params["b_U"]


def embed(params: dict[str, torch.Tensor], tokens: Int[torch.Tensor, "N 3"]) -> Float[torch.Tensor, "N 3 d"]:
    """Node layer 0 (rib's ``ln1.0``): token + positional embeddings at all three positions."""
    return params["W_E"][tokens] + params["W_pos"]


def modules(params: dict[str, torch.Tensor]) -> list:
    """The LIB cut, rib's node layers ``ln1.0 -> ln2.0 -> unembed -> output``, biases folded.

    Each module maps ``[B, P, d + 1]`` (constant coordinate last, scaling every bias) to the next
    node layer with its constant appended: attention ``[B, 3, .] -> [B, 1, .]`` (only the last
    position is kept from here on, as rib's ``last_pos_module_type``), MLP, unembedding.
    """

    def attention(f):
        x, c = f[..., :-1], f[..., -1:]
        k = torch.einsum("npd,hde->nphe", x, params["W_K"]) + c[..., None] * params["b_K"]
        v = torch.einsum("npd,hde->nphe", x, params["W_V"]) + c[..., None] * params["b_V"]
        q = torch.einsum("nd,hde->nhe", x[:, -1], params["W_Q"]) + c[:, -1, :, None] * params["b_Q"]
        mid = x[:, -1] + _attend(params, q, k, v) + c[:, -1] * params["b_O"]
        return torch.cat([mid, c[:, -1]], -1)[:, None]

    def mlp(f):
        return torch.cat([_mlp(params, f[..., :-1], f[..., -1:]), f[..., -1:]], -1)

    def unembed(f):
        return torch.cat([_unembed(params, f[..., :-1], f[..., -1:]), f[..., -1:]], -1)

    for fn in (attention, mlp, unembed):
        fn.folded = True
    return [attention, mlp, unembed]


NODE_LAYERS = ("ln1.0", "ln2.0", "unembed", "output")


def _ensemble_loss(params, tokens, labels):
    logits = torch.func.vmap(forward, in_dims=(0, None))(params, tokens)  # [S, N, V]
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.repeat(len(logits)), reduction="sum") / len(
        labels
    )


@torch.no_grad()
def accuracy(params: dict[str, torch.Tensor], tokens, labels) -> torch.Tensor:
    """Accuracy of one model (``[]``) or of a stacked ensemble (``[S]``)."""
    if params["W_E"].dim() == 2:
        return (forward(params, tokens).argmax(-1) == labels).double().mean()
    logits = torch.func.vmap(forward, in_dims=(0, None))(params, tokens)
    return (logits.argmax(-1) == labels).double().mean(-1)


@torch.no_grad()
def _grokfast(params, ema, alpha, lamb):
    """Grokfast-EMA: amplify the slow (low-pass) component of the gradient, which speeds up
    grokking by an order of magnitude or more on algorithmic tasks (Lee et al. 2024)."""
    for k, p in params.items():
        ema[k] = p.grad.clone() if k not in ema else ema[k].mul_(alpha).add_(p.grad, alpha=1 - alpha)
        p.grad.add_(ema[k], alpha=lamb)


def train(
    cfg: ModAddConfig, seeds: list[int], log_every: int = 25, init: list[dict] | None = None, progress: bool = True
) -> tuple[list[dict], list[dict]]:
    """Train one model per seed at once (vmap over stacked weights; AdamW is elementwise, so this
    equals independent runs). Full batch. ``init``: continue from these weights (fresh optimiser
    state). Returns (params per seed, metrics per seed)."""
    import time

    from tqdm import tqdm

    tokens, labels, train_mask = dataset(cfg)
    per_seed = init or [init_params(cfg, s) for s in seeds]
    params = {k: torch.stack([p[k] for p in per_seed]).requires_grad_() for k in per_seed[0]}
    opt = torch.optim.AdamW(params.values(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas)
    x_tr, y_tr, x_te, y_te = tokens[train_mask], labels[train_mask], tokens[~train_mask], labels[~train_mask]
    above = torch.zeros(len(seeds), dtype=torch.long)
    grok = [None] * len(seeds)
    ema: dict[str, torch.Tensor] = {}
    bar = tqdm(range(1, cfg.max_epochs + 1), desc="mod-add", mininterval=5, disable=not progress)
    start, stopped = time.monotonic(), "max_epochs"
    for epoch in bar:
        opt.zero_grad(set_to_none=True)
        loss = _ensemble_loss(params, x_tr, y_tr)
        loss.backward()
        if cfg.grokfast_alpha is not None:
            _grokfast(params, ema, cfg.grokfast_alpha, cfg.grokfast_lamb)
        opt.step()
        if epoch % log_every == 0:
            test_acc = accuracy(params, x_te, y_te)
            bar.set_postfix(loss=f"{loss.item() / len(seeds):.3g}", test=",".join(f"{a:.3f}" for a in test_acc))
            ok = test_acc >= (cfg.stop_test_acc or 2.0)
            above = torch.where(ok, above + log_every, torch.zeros_like(above))
            grok = [g if g is not None or not o else epoch for g, o in zip(grok, ok.tolist())]
            if cfg.stop_test_acc is not None and bool((above >= cfg.stop_patience).all()):
                stopped = "test accuracy"
                break
            if cfg.max_minutes is not None and time.monotonic() - start > 60 * cfg.max_minutes:
                stopped = "time budget"
                break
    final = {k: v.detach() for k, v in params.items()}
    out_params = [{k: v[i].clone() for k, v in final.items()} for i in range(len(seeds))]
    train_acc, test_acc = accuracy(final, x_tr, y_tr), accuracy(final, x_te, y_te)
    metrics = [
        {
            "seed": s,
            "epochs": epoch,
            "stopped_by": stopped,
            "first_epoch_test_acc_above_stop": grok[i],
            "train_acc": float(train_acc[i]),
            "test_acc": float(test_acc[i]),
        }
        for i, s in enumerate(seeds)
    ]
    return out_params, metrics


def save(params: dict[str, torch.Tensor], cfg: ModAddConfig, metrics: dict, path: str | Path) -> Path:
    """Write ``weights.safetensors`` + ``config.json`` (config, metrics, the weights' xxh3 digest)
    into a fresh folder swapped in whole for ``path`` (``replace_dir``; other files kept)."""
    path = Path(path)
    tensors = {k: v.contiguous() for k, v in params.items()}

    def fill(tmp: Path) -> None:
        save_file(tensors, str(tmp / "weights.safetensors"))
        record = {"config": dataclasses.asdict(cfg), "metrics": metrics}
        write_json_atomic(tmp / "config.json", record | {"xxh3": file_digest(tmp / "weights.safetensors")})

    with folder_lock(path, "mod-add model folder"):
        replace_dir(path, fill, keep_others=True)
    return path


def load(path: str | Path) -> tuple[dict[str, torch.Tensor], ModAddConfig, dict]:
    path = current_dir(path)
    meta = read_json(path / "config.json", "mod-add model config")
    cfg = ModAddConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()})
    weights = load_safetensors(
        path / "weights.safetensors",
        "mod-add model weights",
        digest=meta.get("xxh3"),
        repair=f"delete {path} and run the command again to retrain it",
    )
    return weights, cfg, meta["metrics"]


def train_or_load(cfg: ModAddConfig, seeds: list[int], root: str | Path) -> list[tuple[dict, dict]]:
    """Cached checkpoints ``root/seed{S}`` (trained together if any is missing and same config)."""
    root = Path(root)
    cached = {}
    for s in seeds:
        if (root / f"seed{s}" / "config.json").exists():
            params, old, metrics = load(root / f"seed{s}")
            if dataclasses.replace(old, seed=0) == dataclasses.replace(cfg, seed=0):
                cached[s] = (params, metrics)
    missing = [s for s in seeds if s not in cached]
    if missing:
        for s, params, metrics in zip(missing, *train(cfg, missing)):
            save(params, dataclasses.replace(cfg, seed=s), metrics, root / f"seed{s}")
            cached[s] = (params, metrics)
    return [cached[s] for s in seeds]
