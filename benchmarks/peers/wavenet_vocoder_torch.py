"""The peer's side of ``benchmarks/equal_budget_wavenet.py``: r9y9/wavenet_vocoder.

Run with a Python that has torch (this file needs only torch and numpy, never jaxar):

    PY wavenet_vocoder_torch.py --peer CHECKOUT --data DIR --seed S --out FILE.npz

It builds the peer's ``WaveNet`` (``wavenet_vocoder/wavenet.py``: one-hot mu-law input, the
gated residual layers with weight norm and Kaiming-normal initialisation, residual sums scaled
by sqrt(0.5) and skips by sqrt(1 / layers), the ReLU-1x1-ReLU-1x1 head) with no conditioning
and no dropout, and trains it as its ``train.py`` does for ``input_type="mulaw-quantize"``:
cross-entropy of ``y_hat[:, :, :-1]`` against ``x[:, 1:]`` (position 0 is never predicted),
mean over the batch and time, ``torch.optim.Adam`` at a constant ``--lr``, no gradient
clipping (its ``clip_thresh=-1``), on the crops ``DIR/train_S.npy`` holds (``(steps, batch,
T)`` mu-law levels), one thread. Then it writes, for every window of ``DIR/test.npy``
(``(N, T)`` levels), the nats of positions 1..T-1 (evaluation mode), which the harness turns
into bits per sample beside jaxar's figure over the same positions.

The peer's code is imported from ``--peer`` (its ``wavenet_vocoder`` package), never copied.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--stacks", type=int, default=2)
    ap.add_argument("--residual", type=int, default=32)
    ap.add_argument("--gate", type=int, default=64)
    ap.add_argument("--skip", type=int, default=32)
    ap.add_argument("--kernel", type=int, default=3)
    ap.add_argument("--levels", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-batch", type=int, default=32)
    args = ap.parse_args(argv)
    sys.path.insert(0, args.peer)
    from wavenet_vocoder import WaveNet

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    model = WaveNet(
        out_channels=args.levels,
        layers=args.layers,
        stacks=args.stacks,
        residual_channels=args.residual,
        gate_channels=args.gate,
        skip_out_channels=args.skip,
        kernel_size=args.kernel,
        dropout=0.0,
        cin_channels=-1,
        gin_channels=-1,
        scalar_input=False,
    )
    num_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    crops = np.load(f"{args.data}/train_{args.seed}.npy")
    eye = torch.eye(args.levels)

    def forward(x):  # x: (B, T) levels -> logits (B, levels, T)
        return model(eye[x].transpose(1, 2), None, None, False)

    model.train()
    losses, times = [], []
    for batch in crops:
        t0 = time.perf_counter()
        x = torch.from_numpy(batch.astype(np.int64))
        loss = F.cross_entropy(forward(x)[:, :, :-1], x[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        times.append(time.perf_counter() - t0)

    model.eval()
    test = np.load(f"{args.data}/test.npy")
    nats = []
    with torch.no_grad():
        for i in range(0, len(test), args.eval_batch):
            x = torch.from_numpy(test[i : i + args.eval_batch].astype(np.int64))
            ce = F.cross_entropy(forward(x)[:, :, :-1], x[:, 1:], reduction="none")
            nats.append(ce.double().sum(dim=1).numpy())
    np.savez(
        args.out,
        test_nats=np.concatenate(nats),
        train_loss=np.asarray(losses),
        step_seconds=np.asarray(times),
        num_params=num_params,
    )


if __name__ == "__main__":
    main()
