#!/usr/bin/env python
"""Loader throughput on prepared data: seconds of stereo audio delivered per second per worker.

    .venv/bin/python benchmarks/bench_loader.py --manifest exp/vocals/data/train.csv --workers 0
    .venv/bin/python benchmarks/bench_loader.py --manifest exp/vocals/data/train.csv --workers 2

Target: >= 50x real time per worker, so that loading never limits training. Each
worker (or the main process with ``--workers 0``) runs one thread. The OS file cache is
whatever it is (warm after the first epoch); ``--epochs`` > 1 shows both.
"""
import argparse
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from asteroid_frugal.cli.common import run  # noqa: E402
from asteroid_frugal.config import load_config  # noqa: E402
from asteroid_frugal.data.datasets import Augment, ExcerptDataset  # noqa: E402
from asteroid_frugal.utils import write_json_atomic  # noqa: E402


def _one_thread(_worker_id=None):
    torch.set_num_threads(1)


def bench(manifest, target, workers, batch_size, epochs, augment=None):
    _one_thread()
    ds = ExcerptDataset(manifest, target, n_channels=2, augment=augment)   # stereo, as prepared
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                        worker_init_fn=_one_thread, persistent_workers=workers > 0)
    per_epoch = []
    for epoch in range(epochs):
        t0, audio = time.perf_counter(), 0.0
        for mix, targets in loader:
            assert mix.shape[1] == 2 and targets.shape[1] == 2
            audio += mix.shape[0] * mix.shape[-1] / ds.sample_rate
        dt = time.perf_counter() - t0
        per_epoch.append({"epoch": epoch, "audio_seconds": audio, "wall_seconds": dt,
                          "x_realtime": audio / dt, "x_realtime_per_worker": audio / dt / max(workers, 1)})
    return {"manifest": str(manifest), "items": len(ds), "segment_seconds": ds.segment_samples / ds.sample_rate,
            "workers": workers, "batch_size": batch_size, "augment": augment is not None, "epochs": per_epoch}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default="exp/vocals/data/train.csv")
    parser.add_argument("--target", default="vocals")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--augment", action="store_true", help="gain + channel swap + remix")
    parser.add_argument("--out", default=None, help="write the result as JSON")
    args = parser.parse_args(argv)
    aug = Augment.from_conf(load_config(overrides=["shaping.augment_gain=true", "shaping.augment_channel_swap=true",
                                                   "shaping.augment_remix=true"])) if args.augment else None
    result = bench(args.manifest, args.target, args.workers, args.batch_size, args.epochs, aug)
    for e in result["epochs"]:
        print(f"epoch {e['epoch']}: {e['audio_seconds']:.0f} s of stereo audio in {e['wall_seconds']:.2f} s = "
              f"{e['x_realtime']:.0f}x real time, {e['x_realtime_per_worker']:.0f}x per worker "
              f"({args.workers} workers)")
    if args.out:
        write_json_atomic(args.out, result)
    return result


if __name__ == "__main__":
    run(main)
