"""The one SAE training loop, shared by every variant.

The optimiser (Adam, schedule-free Signum or Muon) and its budget-sized schedule come from
``optim.py``; the run's settings are a ``TrainConfig``, saved as ``train_config.json`` beside the
artifact, apart from the SAE's own ``config.json``. Decoder rows kept at unit norm with the parallel
gradient component removed; ``b_dec`` initialised from the first batch (its mean, geometric median
or zero: the variant's ``b_dec_init``); inputs scaled by a norm-scaling factor estimated up front;
dead latents tracked in tokens since last activation and handed to the variant (for AuxK).
Checkpoints (weights, Adam state, step, dead statistics) are written atomically to
``out/checkpoint`` every ``checkpoint_every`` steps and on Ctrl-C; calling ``train`` again with the
same ``out`` resumes exactly, because the data order is a pure function of (seed, step). wandb logs
offline by default.

Under ``torchrun`` the same loop is data-parallel: every rank draws the same global batch, trains on
its slice, and gradients are averaged; batch-level loss normalisers are global
(``distributed.batch_sq_dev``) and the fired-latent masks are OR-ed, and what a variant takes from
the batch outside the gradient is taken over the global batch (BatchTopK's selection, bias
adaptation's statistics), so weights, decoder normalisation and dead-latent statistics stay
identical on every rank and equal single-process training on the same global batches (up to float
summation order). Rank 0 alone logs, checkpoints and saves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from interp import distributed as _dist
from interp._io import (
    LOCK_FILE,
    check_same_request,
    file_digest,
    job_lock,
    load_safetensors,
    read_json,
    recover_dir,
    remove_dir,
    replace_dir,
    write_json_atomic,
)
from interp.activations import ActivationCache, ActivationStore, fingerprint, norm_scale, prefetch, stream
from interp.decomposers.base import REGISTRY, config_from, load
from interp.decomposers.sae.base import SAE, SAEConfig
from interp.decomposers.sae.checks import LossWatch, check_budget, check_same_data, recon_loss
from interp.decomposers.sae.optim import Optimizers, lr_factor, make_optimizers
from interp.decomposers.sae.train_config import TrainConfig, result_fields, split_config
from interp.errors import ConfigError, DataError, TrainingError


def _make_config(config: Any, train_config: Any = None) -> tuple[SAEConfig, TrainConfig]:
    """The SAE's config and the run's from one flat dict (split by field name), or from a model
    config plus ``train_config``; the variant's ``train_defaults`` fill what neither sets."""
    fields = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    model_fields, train_fields = split_config(fields)
    if train_config is not None:
        train_fields |= (
            dataclasses.asdict(train_config) if dataclasses.is_dataclass(train_config) else dict(train_config)
        )
    method = model_fields.get("method", "topk")
    if method not in REGISTRY or not issubclass(REGISTRY[method], SAE):
        sae_methods = sorted(m for m, c in REGISTRY.items() if issubclass(c, SAE))
        raise ConfigError(f"unknown SAE method {method!r}; choose one of {sae_methods}")
    cls = REGISTRY[method]
    run = config_from(
        TrainConfig,
        {
            **cls.train_defaults,
            **{k: v for k, v in train_fields.items() if v is not None or k not in cls.train_defaults},
        },
    )
    return config_from(cls.config_cls, model_fields), run


def _provenance(data: Any, cfg: SAEConfig) -> SAEConfig:
    """Fill ``model`` and ``site`` from a cache or live store when the config leaves them out."""
    if isinstance(data, ActivationCache):
        sites = data.manifest["sites"]
        model, site = data.manifest["model"], sites[0] if len(sites) == 1 else None
    elif isinstance(data, ActivationStore):
        model, site = data.model.spec, data.site
    else:
        return cfg
    return dataclasses.replace(cfg, model=cfg.model or model, site=cfg.site or site)


def _check_same_settings(saved: dict, cfg: SAEConfig, run: TrainConfig, where: Path) -> None:
    """Refuse to resume or reuse ``where`` when it was made with different settings: ``saved`` holds
    the model's fields and the run's (runtime fields such as device or logging, fields the config
    leaves to the data (None), and fields the saved run predates aside)."""
    request = {k: v for k, v in (result_fields(cfg) | result_fields(run)).items() if v is not None and k in saved}
    check_same_request(saved, request, where, "SAE run")


class _Checkpoint:
    """Checkpoint folder: state.safetensors (weights + optimiser state) and state.json (step, config,
    optimiser scalars, data fingerprint), replaced atomically (``replace_dir``), so a signal never
    leaves it half-written.

    Written in training mode: for schedule-free Signum the weights are the training point ``y``,
    saved with ``z`` and the averaging scalars (``state.json``'s ``optim``), so a resumed run
    continues exactly; only the final artifact holds the average ``x``."""

    def __init__(self, out: Path | None, data_id: str | None = None):
        self.dir = out / "checkpoint" if out else None
        self.data_id = data_id
        self.watch = LossWatch(0.0)  # the run's first loss travels with the checkpoint

    def exists(self) -> bool:
        return bool(self.dir) and (recover_dir(self.dir) / "state.json").exists()

    def save(self, sae: SAE, opt: Optimizers, step: int, since_fired: torch.Tensor) -> None:
        if not self.dir or not _dist.is_main():
            return
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in sae.state_dict().items()}
        for name, p in sae.named_parameters():
            for key, val in opt.state.get(p, {}).items():
                tensors[f"adam.{name}.{key}"] = val.detach().cpu().reshape(val.shape).contiguous()
        tensors["since_fired"] = since_fired.cpu()
        state = {
            "step": step,
            "config": _run_record(sae),
            "optim": opt.group_state(),
            "data": self.data_id,
            "first_loss": self.watch.first,
        }

        def fill(tmp: Path) -> None:
            save_file(tensors, str(tmp / "state.safetensors"))
            write_json_atomic(tmp / "state.json", state | {"xxh3": file_digest(tmp / "state.safetensors")})

        replace_dir(self.dir, fill)

    def restore(self, sae: SAE, opt: Optimizers) -> tuple[int, torch.Tensor]:
        state = read_json(self.dir / "state.json", "checkpoint state")
        _check_same_settings(state.get("config", {}), sae.cfg, sae.run, self.dir)
        check_same_data(state.get("data"), self.data_id, self.dir)
        opt.load_group_state(state.get("optim", {}))
        step, self.watch.first = state["step"], state.get("first_loss")
        try:
            tensors = load_safetensors(
                self.dir / "state.safetensors", "SAE checkpoint", str(sae.W_enc.device), digest=state.get("xxh3")
            )
        except DataError as e:
            raise DataError(f"{e}; delete {self.dir} to train again from step 0") from e
        try:
            sae.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            since_fired = tensors["since_fired"]
        except (RuntimeError, KeyError) as e:
            raise DataError(
                f"the checkpoint {self.dir} is damaged ({e}); delete that folder to train again from step 0"
            ) from e
        for name, p in sae.named_parameters():
            state = {k.rsplit(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"adam.{name}.")}
            if state:
                opt.load_param_state(p, state)
        if _dist.is_main():
            print(f"interp: resuming from step {step} (checkpoint in {self.dir})")
        return step, since_fired


def _setup(cfg: SAEConfig, run: TrainConfig, data: Any, device: torch.device) -> SAE:
    """Resolve both configs from the data and build a freshly initialised SAE."""
    probe = stream(data, run.batch_size, site=cfg.site, seed=run.seed + 1, exclude_special=cfg.exclude_special)
    first = next(iter(probe), None)
    if first is None or first.ndim != 2:
        raise ValueError("the training data yielded no [B, D] batch")
    cfg = cfg.resolved(first.shape[1])
    sae = REGISTRY[cfg.method](cfg, run.resolved(cfg.d_sae)).to(device)
    if cfg.normalize:
        sample = stream(data, run.batch_size, site=cfg.site, seed=run.seed + 1, exclude_special=cfg.exclude_special)
        sae.norm_scale.fill_(norm_scale(sample, run.norm_scale_tokens))
    sae.init_from_data(first.to(device) * sae.norm_scale)
    return sae


@torch.no_grad()
def _final_weights(sae: SAE, opt: Optimizers) -> None:
    """The weights to keep: schedule-free's average (a no-op for Adam and Muon), with decoder rows
    projected back to the variant's constraint, since averaging unit rows shortens them."""
    if opt.averaged:
        opt.eval()
        sae.normalize_decoder()


def _run_record(sae: SAE) -> dict:
    """The model's fields and the run's, as one flat record (checkpoint state, wandb config)."""
    return dataclasses.asdict(sae.cfg) | dataclasses.asdict(sae.run)


def _write_train_config(out: Path, run: TrainConfig) -> None:
    """``train_config.json`` beside the artifact: the settings of the run that made it."""
    write_json_atomic(out / "train_config.json", dataclasses.asdict(run))


def _saved_settings(out: Path) -> dict:
    """A finished artifact's settings: its config.json and, beside it, its train_config.json."""
    saved = read_json(out / "config.json", "SAE config")
    if (out / "train_config.json").exists():
        saved |= read_json(out / "train_config.json", "SAE training config")
    return saved


def train(
    config: Any,
    data: Any,
    out: str | Path | None = None,
    progress: bool = True,
    train_config: TrainConfig | dict | None = None,
) -> SAE:
    """Train an SAE on ``data`` (a cache, cache path, live store, tensor or iterable of [B, D]).

    ``config`` is one flat dict of the SAE's and the run's fields (split by name), or an SAE
    config, with the run's settings in ``train_config``. With ``out`` the artifact is written
    there (``train_config.json`` beside it), and an interrupted run resumes from
    ``out/checkpoint``; a finished ``out`` is loaded and returned as it is. Both are refused when
    ``out`` was made from other data (its fingerprint differs). ``out`` is locked for the run.
    """
    data = ActivationCache(data) if isinstance(data, (str, Path)) else data
    cfg, run_cfg = _make_config(config, train_config)
    cfg = _provenance(data, cfg)
    out = Path(out) if out else None
    if out and out.exists() and not out.is_dir():
        raise DataError(f"out={out} is an existing file; an SAE artifact is a folder: choose another path")
    check_budget(run_cfg.n_tokens, _data_tokens(data), "the training data")
    hold = job_lock(out, "SAE run folder") if out else contextlib.nullcontext()
    with hold:
        return _train(cfg, run_cfg, data, out, fingerprint(data), progress)


def _train(
    cfg: SAEConfig, run_cfg: TrainConfig, data: Any, out: Path | None, data_id: str | None, progress: bool
) -> SAE:
    device = _dist.local_device(run_cfg.device)
    ckpt = _Checkpoint(out, data_id)
    if out and _dist.is_main():
        recover_dir(out)  # finish an artifact or checkpoint swap a signal interrupted
        recover_dir(out / "checkpoint")
    _dist.barrier()
    if out and (out / "config.json").exists() and not ckpt.exists():
        _check_same_settings(_saved_settings(out), cfg, run_cfg, out)
        check_same_data(read_json(out / "meta.json", "SAE meta").get("data"), data_id, out)
        print(f"interp: {out} already holds a trained SAE with these settings; loading it")
        return load(out, device=device)
    if out and _dist.is_main() and not ckpt.exists() and any(p.name != LOCK_FILE for p in out.iterdir()):
        print(
            f"interp: {out} holds no checkpoint (the last run stopped before its first one); training starts at step 0"
        )
    if run_cfg.batch_size % _dist.world()[1]:
        raise ConfigError(
            f"batch_size {run_cfg.batch_size} must be divisible by the number of processes "
            f"({_dist.world()[1]}) for data-parallel training"
        )
    torch.manual_seed(run_cfg.seed)
    sae = _setup(cfg, run_cfg, data, device)
    cfg, run_cfg = sae.cfg, sae.run
    _dist.broadcast_([*sae.parameters(), *sae.buffers()])
    opt = make_optimizers(sae, run_cfg.optimizer, run_cfg.lr, run_cfg.betas, run_cfg.eps)
    ckpt.watch = LossWatch(run_cfg.lr)
    step, since_fired = 0, torch.zeros(cfg.d_sae, dtype=torch.long)
    if ckpt.exists():
        step, since_fired = ckpt.restore(sae, opt)
    since_fired = since_fired.to(device)
    batches = prefetch(
        stream(
            data, run_cfg.batch_size, site=cfg.site, seed=run_cfg.seed, skip=step, exclude_special=cfg.exclude_special
        ),
        device,
        run_cfg.prefetch,
    )
    run = _wandb(sae, out) if _dist.is_main() else None
    try:
        step, logged = _loop(sae, opt, batches, since_fired, step, ckpt, run, progress)
    finally:
        if run:
            run.finish()
    _final_weights(sae, opt)
    meta = {
        "steps": step,
        "tokens_seen": step * run_cfg.batch_size,
        "final": logged,
        "dead_frac": logged.get("dead_frac", 0.0),
        "data": data_id,
    }
    last = recon_loss(logged) if logged and sae.first_loss_is_a_baseline else None
    if (warning := ckpt.watch.verdict(last, step, run_cfg.warmup())) is not None:
        meta["warning"] = warning
        warnings.warn(warning, stacklevel=3)
    if out and _dist.is_main():
        _write_train_config(out, run_cfg)
        sae.save(out, meta)
        remove_dir(out / "checkpoint")
    _dist.barrier()  # every rank returns only once the artifact exists
    sae.meta = meta
    return sae.eval()


def _data_tokens(data: Any) -> int | None:
    """How many tokens a finite data source holds (None for an iterable of unknown length)."""
    if isinstance(data, ActivationCache):
        return data.n_tokens
    if isinstance(data, ActivationStore):
        return int(data.text.tokens.size)
    if isinstance(data, torch.Tensor):
        return len(data)
    return None


def _loop(
    sae: SAE,
    opt: Optimizers,
    batches: Any,
    since_fired: torch.Tensor,
    step: int,
    ckpt: _Checkpoint,
    run: Any,
    progress: bool,
) -> tuple[int, dict[str, float]]:
    """Train from ``step`` to the budget; log, checkpoint, and checkpoint on Ctrl-C."""
    cfg = sae.run
    n_steps = cfg.n_steps
    device = sae.W_enc.device
    bar = tqdm(
        total=n_steps,
        initial=step,
        disable=not (progress and _dist.is_main()),
        desc=f"training {sae.cfg.method} SAE",
        unit="step",
    )
    terms: dict[str, torch.Tensor] = {}
    logged: dict[str, float] = {}
    stop = _InterruptFlag()
    try:
        while step < n_steps:
            x = next(batches, None)
            if x is None or len(x) % _dist.world()[1]:  # data-parallel: equal shards only
                break
            terms, stopping = _train_step(
                sae, opt, _dist.shard(x).to(device, non_blocking=True), len(x), since_fired, step, stop.raised
            )
            step += 1
            bar.update(1)
            if stopping:  # every rank sees the same flag, so all stop after the same step
                raise KeyboardInterrupt
            checkpoint = step % cfg.checkpoint_every == 0 and step < n_steps
            if step % cfg.log_every == 0 or step == n_steps or checkpoint or ckpt.watch.first is None:
                logged = _scalars(terms, step, cfg, since_fired)  # the only host syncs
                ckpt.watch.check(recon_loss(logged), step)
                bar.set_postfix({k: f"{v:.3g}" for k, v in logged.items()})
                if run:
                    run.log(logged, step=step)
            if checkpoint:
                ckpt.save(sae, opt, step, since_fired)
        return step, (_scalars(terms, step, cfg, since_fired) if terms else logged)
    except KeyboardInterrupt:
        if terms:  # never checkpoint a diverged state
            ckpt.watch.check(recon_loss(_scalars(terms, step, cfg, since_fired)), step)
        if ckpt.dir:
            ckpt.save(sae, opt, step, since_fired)
            if _dist.is_main():
                print(f"\ninterp: interrupted at step {step}; checkpoint saved, run the same command to resume")
        raise
    finally:
        stop.restore()
        bar.close()


class _InterruptFlag:
    """Defer Ctrl-C to the next step boundary so a checkpoint never holds half a step."""

    def __init__(self):
        import signal
        import threading

        self.raised = False
        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, *_: Any) -> None:
        if self.raised:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.raised = True

    def restore(self) -> None:
        import signal

        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _scalars(
    terms: dict[str, torch.Tensor], step: int, cfg: TrainConfig, since_fired: torch.Tensor
) -> dict[str, float]:
    """Loss terms as floats (one device sync), refusing to go on from a non-finite loss."""
    names = sorted(terms)
    stacked = _dist.all_reduce(torch.stack([terms[k].float() for k in names]), "mean").tolist()
    values = dict(zip(names, stacked))
    if not all(math.isfinite(v) for v in values.values()):
        raise TrainingError(
            f"SAE loss became {values} by step {step} (lr {cfg.lr:.3g}): NaN or inf. Lower lr or check "
            f"the data for inf/NaN; the last checkpoint (if any) is intact and resumable."
        )
    return values | {"dead_frac": (since_fired >= cfg.dead_tokens).float().mean().item()}


def _train_step(
    sae: SAE, opt: Optimizers, x: torch.Tensor, n_global: int, since_fired: torch.Tensor, step: int, stop: bool
) -> tuple[dict[str, torch.Tensor], bool]:
    """One optimiser step on this rank's slice ``x`` of a global batch of ``n_global`` tokens.

    Returns the loss terms and whether any rank asked to stop (Ctrl-C).
    """
    cfg = sae.run
    opt.set_lr(lr_factor(step, cfg.n_steps, cfg.warmup(), cfg.decay()))
    dead = since_fired >= cfg.dead_tokens
    xn = x.to(sae.W_enc.dtype) * sae.norm_scale
    with _autocast(cfg, xn.device):
        result = _step_fn(sae)(xn, dead)
    opt.zero_grad()
    result.loss.backward()
    _average_grads(sae)
    sae.constrain_decoder_grad()
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(sae.parameters(), cfg.grad_clip)
    opt.step()
    sae.normalize_decoder()
    sae.after_step(xn, result, step + 1)
    fired, stop = _any_rank(result.fired, stop)
    since_fired += n_global
    since_fired[fired] = 0
    return {k: v.detach() for k, v in result.terms.items()} | {"loss": result.loss.detach()}, stop


def _autocast(cfg: TrainConfig, device: torch.device) -> Any:
    """Mixed precision for the variant's forward (parameters and Adam stay float32)."""
    if cfg.autocast is None:
        return contextlib.nullcontext()
    dtypes = {"bfloat16": torch.bfloat16, "float16": torch.float16}
    if cfg.autocast not in dtypes:
        raise ValueError(f"autocast must be one of {sorted(dtypes)} or None, got {cfg.autocast!r}")
    return torch.autocast(device.type, dtype=dtypes[cfg.autocast])


def _step_fn(sae: SAE) -> Any:
    """The variant's step, compiled once per SAE when ``cfg.compile``."""
    if not sae.run.compile:
        return sae.step
    if getattr(sae, "_compiled_step", None) is None:
        sae._compiled_step = torch.compile(sae.step)
    return sae._compiled_step


def _average_grads(sae: SAE) -> None:
    """All-reduce (mean) every gradient in one flat buffer; a no-op in one process."""
    if _dist.world()[1] == 1:
        return
    params = [p for p in sae.parameters() if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = _dist.all_reduce(torch.cat([g.reshape(-1) for g in grads]), "mean")
    for p, g in zip(params, flat.split([g.numel() for g in grads])):
        p.grad = g.view_as(p)


def _any_rank(fired: torch.Tensor, stop: bool) -> tuple[torch.Tensor, bool]:
    """OR the fired masks and the stop flags of all ranks (one small collective)."""
    if _dist.world()[1] == 1:
        return fired, stop
    flags = torch.cat([fired.to(torch.int32), torch.tensor([int(stop)], dtype=torch.int32, device=fired.device)])
    _dist.all_reduce(flags, "max")
    return flags[:-1].bool(), bool(flags[-1])


def _wandb(sae: SAE, out: Path | None) -> Any:
    cfg = sae.run
    if cfg.wandb == "disabled":
        return None
    import os

    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    return wandb.init(
        project=cfg.wandb_project,
        mode=cfg.wandb,
        config=_run_record(sae),
        dir=str(out) if out else None,
        reinit="finish_previous",
    )
