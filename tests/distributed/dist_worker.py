"""Run under ``torchrun --nproc_per_node 2``: the distributed half of test_distributed.py.

``dist_worker.py train OUT`` trains the test SAE data-parallel and writes it to OUT (rank 0);
``dist_worker.py cache CORPUS OUT`` caches the tiny model's activations with every rank working.
"""

import os
import sys

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)
sys.path.insert(0, os.path.dirname(__file__))

from dist_cases import CACHE_ARGS, sae_config, sae_data  # noqa: E402

from interp import distributed  # noqa: E402


def main(mode: str, *args: str) -> None:
    distributed.init("gloo")
    if mode == "train":
        from interp.decomposers.sae import train

        train(sae_config(), sae_data(), out=args[0], progress=False)
    elif mode == "cache":
        import interp.models
        from interp.activations import cache_activations

        model = interp.models.load("tiny-llama", device="cpu")
        cache_activations(model, args[0], out_dir=args[1], progress=False, **CACHE_ARGS)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
