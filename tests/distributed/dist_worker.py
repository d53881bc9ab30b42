"""Run under ``torchrun --nproc_per_node 2``: the distributed half of test_distributed.py.

``dist_worker.py train OUT`` trains the test SAEs data-parallel and writes them to OUT/<method>;
``dist_worker.py cache CORPUS OUT`` caches the tiny model's activations with every rank working.
``dist_worker.py locked CORPUS CACHE RUN`` caches into CACHE and trains into RUN, two folders another
job holds: each rank prints the error it got (``rank R: Type: message``).
"""

import os
import sys

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)
sys.path.insert(0, os.path.dirname(__file__))

from dist_cases import CACHE_ARGS, DP_METHODS, sae_config, sae_data  # noqa: E402

from interp import distributed  # noqa: E402


def main(mode: str, *args: str) -> None:
    distributed.init("gloo")
    if mode == "train":
        from interp.decomposers.sae import train

        for method in DP_METHODS:
            train(sae_config(method), sae_data(), out=os.path.join(args[0], method), progress=False)
    elif mode == "cache":
        import interp.models
        from interp.activations import cache_activations

        model = interp.models.load("tiny-llama", device="cpu")
        cache_activations(model, args[0], out_dir=args[1], progress=False, **CACHE_ARGS)
    elif mode == "locked":
        import interp.models
        from interp.activations import cache_activations
        from interp.decomposers.sae import train
        from interp.errors import InterpError

        model = interp.models.load("tiny-llama", device="cpu")
        jobs = [
            lambda: cache_activations(model, args[0], out_dir=args[1], progress=False, **CACHE_ARGS),
            lambda: train(sae_config(), sae_data(), out=args[2], progress=False),
        ]
        for job in jobs:
            try:
                job()
                print(f"rank {distributed.global_rank()}: finished", flush=True)
            except InterpError as e:
                print(f"rank {distributed.global_rank()}: {type(e).__name__}: {e}", flush=True)
            distributed.barrier()  # both ranks report before either moves on or exits
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    distributed.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
    # Every rank is done and has reported. Leave without the interpreter's teardown: torch's gloo
    # teardown at exit aborted one CI run of the "locked" case (SIGABRT, "terminate called without
    # an active exception") after both ranks had printed all their results.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
