"""Head SVD: singular components of every attention head's OV and QK circuits, and composition.

Follows Merullo, Eickhoff & Pavlick, "Talking Heads: Understanding Inter-layer Communication in
Transformer Language Models" (NeurIPS 2024). Conventions (row vectors, ``x @ W``, as in
TransformerLens):

- OV of head h: ``W_V[g] @ W_O[h]`` [D, D]; QK: ``W_Q[h] @ W_K[g].T`` [D, D], where
  ``g = h // (n_heads // n_kv_heads)`` is the query head's key/value group (GQA).
- ``components(l, h, circuit)`` -> ``(U [D, r], S [r], Vt [r, D])`` with ``U diag(S) Vt`` equal to
  the circuit. For OV, ``U[:, i]`` is the direction component i **reads** (at
  ``blocks.l.hook_resid_pre``) and ``Vt[i]`` the direction it **writes** into the residual stream
  (a head's output is always a combination of its ``Vt`` rows). For QK, ``U[:, i]`` is read on the
  query side and ``Vt[i]`` on the key side. r = d_head (the circuits have rank d_head).
- Norm weights are folded in by default (``fold_norms``): the pre-attention RMSNorm gain into
  W_Q/W_K/W_V, Gemma's q/k norm gains into W_Q/W_K, Gemma's post-attention norm gain into W_O.
  The per-token RMS scales are not weights and are left out (a positive scalar per token, it
  rescales a component's activation but not its direction).
- Rotary models (Llama, Gemma): the QK product here **ignores the rotation** applied between Q and
  K, so it is the bilinear form at relative offset 0 only. ``interp.decomposers.heads.rotary``
  gives the data-based alternative (the rotation averaged over the offsets a head attends across
  on real text), and ``composition_scores(..., rotary="separate")`` composes with W_Q or W_K alone
  (the authors' suggestion, App. A). The softmax scale (1/sqrt(d_head)) is not included.
- Singular vectors have a sign ambiguity; signs are fixed so each write vector's largest-magnitude
  entry is positive (U flipped to match), so a component's index and sign are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from einops import rearrange
from jaxtyping import Float
from torch import Tensor

from interp.decomposers.base import Decomposer, config_fields, register
from interp.errors import ConfigError

CIRCUITS = ("ov", "qk")
KINDS = ("q", "k", "v")


@dataclass(frozen=True)
class HeadSVDConfig:
    """Shapes of the fitted model plus the *view* ``directions()`` returns (circuit, side, layer)."""

    model: str = ""  # model spec the weights came from (set by fit)
    n_layers: int = 0  # number of layers (set by fit from the model)
    n_heads: int = 0  # query heads per layer (set by fit)
    n_kv_heads: int = 0  # key/value heads per layer; GQA heads share their group's (set by fit)
    d_model: int = 0  # residual width (set by fit)
    d_head: int = 0  # head width (set by fit)
    fold_norms: bool = True  # fold the norm gains (and Gemma's q/k, post-attention norms) into the weights
    circuit: str = "ov"  # ov | qk: which circuit's components directions() returns
    side: str = "write"  # write (Vt rows) | read (U columns)
    layer: int | None = None  # None: every layer
    site: str = ""  # hook site of directions(); set from the view (see view_site)


def view_site(cfg: HeadSVDConfig) -> str:
    """Write vectors live at ``blocks.L.hook_resid_post``, read vectors at ``blocks.L.hook_resid_pre``.

    With ``layer=None`` the rows come from every layer; they are all residual-stream directions and
    the site named is where all of them are present: the last layer's resid_post for writes (every
    attention write has arrived), layer 0's resid_pre for reads (the residual basis they read in).
    """
    if cfg.circuit not in CIRCUITS or cfg.side not in ("write", "read"):
        raise ValueError(
            f"circuit must be one of {CIRCUITS} and side 'write'|'read', got {cfg.circuit!r}, {cfg.side!r}"
        )
    if cfg.layer is not None and not 0 <= cfg.layer < cfg.n_layers:
        raise ValueError(f"layer {cfg.layer} out of range 0..{cfg.n_layers - 1}")
    if cfg.side == "write":
        return f"blocks.{cfg.n_layers - 1 if cfg.layer is None else cfg.layer}.hook_resid_post"
    return f"blocks.{0 if cfg.layer is None else cfg.layer}.hook_resid_pre"


def _norm_gain(norm: torch.nn.Module, width: int) -> Tensor:
    """The per-channel gain of an RMSNorm module (``w`` for Llama, ``1 + w`` for Gemma), found by
    applying it to a vector of ones (RMS 1), so either convention is honoured without special cases."""
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", 0.0))
    w = next(norm.parameters())
    with torch.no_grad():
        out = norm(torch.ones(width, dtype=w.dtype, device=w.device)).double().cpu()
    return out * (1.0 + eps) ** 0.5


@torch.no_grad()
def head_weights(model, fold_norms: bool = True) -> dict[str, Tensor]:
    """Per-head weights from the HF model, in float64: W_Q [L,H,D,dh], W_K/W_V [L,G,D,dh], W_O [L,H,dh,D].

    Layouts: HF ``q_proj.weight`` is [H*dh, D] (``y = x @ weight.T``), so head h's W_Q is
    ``weight[h*dh:(h+1)*dh].T``; ``o_proj.weight`` is [D, H*dh], so W_O[h] = ``weight[:, h*dh:(h+1)*dh].T``.
    These agree with the bridge's ``W_Q``/``W_K``/``W_V``/``W_O`` (checked in the tests).
    """
    dh = model.d_head
    out: dict[str, list[Tensor]] = {"W_Q": [], "W_K": [], "W_V": [], "W_O": []}
    for layer in model.hf_model.get_decoder().layers:
        att = layer.self_attn
        wq, wk, wv = (
            rearrange(p.weight.double().cpu(), "(h e) d -> h d e", e=dh) for p in (att.q_proj, att.k_proj, att.v_proj)
        )
        wo = rearrange(att.o_proj.weight.double().cpu(), "d (h e) -> h e d", e=dh)
        if fold_norms:
            g_in = _norm_gain(layer.input_layernorm, model.d_model)[None, :, None]
            wq, wk, wv = wq * g_in, wk * g_in, wv * g_in
            if getattr(att, "q_norm", None) is not None:  # Gemma 3: RMSNorm on each head's q and k
                wq = wq * _norm_gain(att.q_norm, dh)
                wk = wk * _norm_gain(att.k_norm, dh)
            if hasattr(layer, "pre_feedforward_layernorm"):  # Gemma sandwich norm: attention output is normed
                wo = wo * _norm_gain(layer.post_attention_layernorm, model.d_model)
        for k, v in zip(out, (wq, wk, wv, wo)):
            out[k].append(v)
    return {k: torch.stack(v) for k, v in out.items()}


def factored_svd(A: Float[Tensor, "... D e"], B: Float[Tensor, "... e D"]):
    """SVD of ``A @ B`` without forming it: QR of both factors, then an e x e SVD (batched).

    Returns (U [..., D, e], S [..., e], Vt [..., e, D]) with signs fixed so that each row of Vt has a
    positive largest-magnitude entry.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batched small LAPACK calls: threading each tiny matrix thrashes
    try:  # (measured on 2 cores: QR of 270 576x64 blocks 1.7 s on one thread, 39 s on two)
        qa, ra = torch.linalg.qr(A)
        qb, rb = torch.linalg.qr(B.mT)
        u, s, vt = torch.linalg.svd(ra @ rb.mT)
    finally:
        torch.set_num_threads(threads)
    U, Vt = qa @ u, vt @ qb.mT
    idx = Vt.abs().argmax(-1, keepdim=True)
    sign = torch.sign(torch.gather(Vt, -1, idx))
    sign[sign == 0] = 1
    return U * sign.mT, s, Vt * sign


@register("attn_svd")
class HeadSVD(Decomposer):
    """SVD components of every head's OV and QK circuits; a decomposer over residual directions."""

    config_cls = HeadSVDConfig

    def __init__(self, cfg: HeadSVDConfig):
        cfg = replace(cfg, site=view_site(cfg)) if cfg.n_layers else cfg
        super().__init__(cfg)
        L, H, G, D, e = cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.d_model, cfg.d_head
        for name, shape in {"W_Q": (L, H, D, e), "W_K": (L, G, D, e), "W_V": (L, G, D, e), "W_O": (L, H, e, D)}.items():
            self.register_buffer(name, torch.zeros(shape))
        for c in CIRCUITS:
            self.register_buffer(f"U_{c}", torch.zeros(L, H, D, e))
            self.register_buffer(f"S_{c}", torch.zeros(L, H, e))
            self.register_buffer(f"Vt_{c}", torch.zeros(L, H, e, D))

    fit_data = "model"

    @classmethod
    def fit_config(cls, data: Any, cfg: Any, *, progress: bool = True) -> "HeadSVD":
        """``fit(model, **view)`` from a config: its shape fields and ``model`` come from the model
        given, so only ``fold_norms`` and the view (circuit, side, layer) are read from ``cfg``."""
        shape = ("n_layers", "n_heads", "n_kv_heads", "d_model", "d_head")
        if isinstance(cfg, dict) and set(shape) & set(cfg):
            raise ConfigError(f"attn_svd reads {', '.join(shape)} from the model: leave them out of the config")
        fields = config_fields(HeadSVDConfig, cfg)
        return cls.fit(data, **{k: fields[k] for k in ("fold_norms", "circuit", "side", "layer")})

    @classmethod
    def fit(cls, model, fold_norms: bool = True, **view) -> "HeadSVD":
        """Decompose every head of ``model`` (a ``LoadedModel``); ``view`` sets circuit/side/layer."""
        if model.n_heads % model.n_kv_heads:
            raise ValueError(f"n_heads={model.n_heads} is not a multiple of n_kv_heads={model.n_kv_heads}")
        cfg = HeadSVDConfig(
            model=model.spec,
            n_layers=model.n_layers,
            n_heads=model.n_heads,
            n_kv_heads=model.n_kv_heads,
            d_model=model.d_model,
            d_head=model.d_head,
            fold_norms=fold_norms,
            **view,
        )
        self = cls(cfg)
        w = head_weights(model, fold_norms)
        self.W_Q.copy_(w["W_Q"]), self.W_K.copy_(w["W_K"]), self.W_V.copy_(w["W_V"]), self.W_O.copy_(w["W_O"])
        kv = self.kv_group(torch.arange(cfg.n_heads))
        for c, (A, B) in {"ov": (w["W_V"][:, kv], w["W_O"]), "qk": (w["W_Q"], w["W_K"][:, kv].mT)}.items():
            U, S, Vt = factored_svd(A, B)
            getattr(self, f"U_{c}").copy_(U), getattr(self, f"S_{c}").copy_(S), getattr(self, f"Vt_{c}").copy_(Vt)
        return self.eval()

    def kv_group(self, head: Tensor | int) -> Tensor | int:
        """The key/value head that query head ``head`` uses (GQA)."""
        return head // (self.cfg.n_heads // self.cfg.n_kv_heads)

    def view(self, **changes) -> "HeadSVD":
        """The same fitted components with another directions() view (circuit, side, layer)."""
        other = type(self)(replace(self.cfg, **changes))
        other.load_state_dict(self.state_dict())
        return other

    def components(self, layer: int, head: int, circuit: str = "ov"):
        """``(U [D, r], S [r], Vt [r, D])`` of one head's circuit (see the module docstring)."""
        if circuit not in CIRCUITS:
            raise ValueError(f"circuit must be one of {CIRCUITS}, got {circuit!r}")
        if not (0 <= layer < self.cfg.n_layers and 0 <= head < self.cfg.n_heads):
            raise ValueError(
                f"head {layer}.{head} does not exist ({self.cfg.n_layers} layers x {self.cfg.n_heads} heads)"
            )
        return (
            getattr(self, f"U_{circuit}")[layer, head],
            getattr(self, f"S_{circuit}")[layer, head],
            getattr(self, f"Vt_{circuit}")[layer, head],
        )

    def circuit(self, layer: int, head: int, circuit: str = "ov") -> Float[Tensor, "D D"]:
        """The full circuit matrix from the raw weights (OV = W_V W_O, QK = W_Q W_K^T)."""
        g = self.kv_group(head)
        if circuit == "ov":
            return self.W_V[layer, g] @ self.W_O[layer, head]
        return self.W_Q[layer, head] @ self.W_K[layer, g].T

    def feature_index(self) -> Tensor:
        """[F, 3] (layer, head, component) of each row of ``directions()``, in the same order."""
        L, H, r = self.cfg.n_layers, self.cfg.n_heads, self.cfg.d_head
        layers = range(L) if self.cfg.layer is None else [self.cfg.layer]
        return torch.tensor([(l, h, i) for l in layers for h in range(H) for i in range(r)])

    def singular_values(self) -> Float[Tensor, "F"]:
        s = getattr(self, f"S_{self.cfg.circuit}")
        return (s if self.cfg.layer is None else s[self.cfg.layer : self.cfg.layer + 1]).reshape(-1)

    def directions(self) -> Float[Tensor, "F D"]:
        """Unit rows at ``cfg.site``: write vectors (Vt rows) or read vectors (U columns) of the view."""
        c = self.cfg.circuit
        vecs = getattr(self, f"Vt_{c}") if self.cfg.side == "write" else getattr(self, f"U_{c}").mT
        if self.cfg.layer is not None:
            vecs = vecs[self.cfg.layer : self.cfg.layer + 1]
        return rearrange(vecs, "l h r d -> (l h r) d")

    def encode(self, x: Float[Tensor, "B D"]) -> Float[Tensor, "B F"]:
        """Projection onto each direction; for read vectors times sigma (what the component reads)."""
        codes = x.to(self.W_O.dtype) @ self.directions().T
        return codes * self.singular_values() if self.cfg.side == "read" else codes


def _reader_factors(svd: HeadSVD, kind: str, rotary: str):
    """(A [L, H, D, k], scale [L, H, k]) with ``||v @ reader|| = ||(v @ A) * scale||`` for every reader."""
    if rotary == "separate" and kind in ("q", "k"):
        W = svd.W_Q if kind == "q" else svd.W_K[:, svd.kv_group(torch.arange(svd.cfg.n_heads))]
        return W, torch.ones(W.shape[:2] + W.shape[-1:], dtype=W.dtype, device=W.device)
    if kind == "q":  # right = QK: ||v U S Vt|| = ||(v U) S||
        return svd.U_qk, svd.S_qk
    if kind == "k":  # right = QK^T = Vt^T S U^T: ||v Vt^T S||
        return svd.Vt_qk.mT, svd.S_qk
    return svd.U_ov, svd.S_ov  # v: right = OV


def _scores(svd: HeadSVD, V: Tensor, first: int, kind: str, rotary: str) -> Float[Tensor, "... L2 H"]:
    """CS of write vectors ``V [..., D]`` with every reader head in layers ``first..L-1``."""
    A, scale = _reader_factors(svd, kind, rotary)
    A, scale = A[first:], scale[first:]
    proj = torch.einsum("...d,lhdk->...lhk", V, A) * scale  # one matmul: [..., D] x [D, L'*H*k]
    if rotary == "separate" and kind != "v":
        return proj.norm(dim=-1) / A.flatten(-2).norm(dim=-1)
    return proj.norm(dim=-1) / scale.norm(dim=-1)


def _check(kind: str, rotary: str) -> None:
    if kind not in KINDS or rotary not in ("ignore", "separate"):
        raise ValueError(f"kind must be one of {KINDS} and rotary 'ignore'|'separate', got {kind!r}, {rotary!r}")


def composition_scores(
    svd: HeadSVD, writer: tuple[int, int], kind: str = "q", rotary: str = "ignore"
) -> Float[Tensor, "r L H"]:
    """Decomposed composition scores of a writer head's OV components with every reader head.

    ``CS(s_i u_i v_i^T, W2) = ||v_i^T W2|| / ||W2||_F`` (Eq. 1 of the paper with the writer replaced
    by one rank-1 component; the singular value and u_i cancel). W2 is the reader's QK (``kind="q"``),
    QK^T (``"k"``) or OV (``"v"``). ``rotary="separate"`` composes with W_Q (q) or W_K (k) alone
    instead of the rotation-blind QK product. Readers in layers <= the writer's are NaN.
    """
    _check(kind, rotary)
    l, h = writer
    V = svd.components(l, h, "ov")[2]  # [r, D] write vectors
    cs = torch.full((svd.cfg.d_head, svd.cfg.n_layers, svd.cfg.n_heads), float("nan"), dtype=V.dtype, device=V.device)
    if l + 1 < svd.cfg.n_layers:
        cs[:, l + 1 :] = _scores(svd, V, l + 1, kind, rotary)
    return cs


def all_composition_scores(svd: HeadSVD, kind: str = "q", rotary: str = "ignore") -> Float[Tensor, "L H r L H"]:
    """``composition_scores`` for every writer head: one matmul per writer layer, later readers only."""
    _check(kind, rotary)
    L, H, r = svd.cfg.n_layers, svd.cfg.n_heads, svd.cfg.d_head
    out = torch.full((L, H, r, L, H), float("nan"), dtype=svd.Vt_ov.dtype, device=svd.Vt_ov.device)
    for l in range(L - 1):
        out[l, :, :, l + 1 :] = _scores(svd, svd.Vt_ov[l], l + 1, kind, rotary)
    return out


def head_composition_scores(svd: HeadSVD, kind: str = "q") -> Float[Tensor, "L H L H"]:
    """Whole-matrix CS between every writer OV and reader circuit (the noisy undecomposed score)."""
    A, scale = _reader_factors(svd, kind, "ignore")
    rows = []
    for l in range(svd.cfg.n_layers):  # ||S_w Vt_w A S_r||_F / (||S_w|| ||S_r||), one writer layer at a time
        m = torch.einsum("hrd,mgdk->hmgrk", svd.Vt_ov[l] * svd.S_ov[l, ..., None], A) * scale[:, :, None]
        rows.append(m.flatten(-2).norm(dim=-1) / (svd.S_ov[l].norm(dim=-1)[:, None, None] * scale.norm(dim=-1)))
    return torch.stack(rows)


def outlier_zscores(scores: Float[Tensor, "... r L H"]) -> Float[Tensor, "... r L H"]:
    """Within-head outlier score (the paper's criterion): each component's CS in standard deviations
    above the mean CS of the writer head's r components, per reader head."""
    mean, std = scores.mean(dim=-3, keepdim=True), scores.std(dim=-3, keepdim=True)
    return (scores - mean) / std.clamp_min(1e-12)
