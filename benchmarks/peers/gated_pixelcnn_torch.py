"""The peer's side of ``benchmarks/equal_budget_gated.py``: anordertoreclaim/PixelCNN.

Run with a Python that has torch (this file needs only torch and numpy, never jaxar):

    PY gated_pixelcnn_torch.py --peer CHECKOUT --data DIR --seed S --out FILE.npz

It builds the peer's Gated PixelCNN (``pixelcnn/model.py``: a causal block and
``--layers`` gated blocks with vertical and horizontal stacks, skip connections, a ReLU-1x1-
ReLU-1x1 head; every 1x1 and horizontal convolution masked per colour group). The peer's
network is RGB only (``DATA_CHANNELS = 3``) and is always class-conditional; it trains on
grey datasets as its ``utils.py`` does, each grey image repeated into three channels, scaled
to ``[0, 1]``, and here with one constant label (0) for every image, so its label embeddings
are learned biases and the model is unconditional. The grey image's exact likelihood under
the peer's model is that of its first channel (R, generated first: its conditionals read the
earlier pixels, whose three channels are the grey values), so the loss is the cross-entropy
of the R channel alone, mean over pixels (the peer's ``train.py`` averages over all three
channels, which would also spend the network on predicting G and B as copies of R), with
``torch.optim.Adam`` at a constant ``--lr`` (the peer's default adds weight decay, a cyclic
rate and clipping: the harness gives both sides the same plain recipe), on the batches
``DIR/order_S.npy`` lists (indices into ``DIR/train.npy``, uint8 ``(N, H, W, 1)``), one
thread. Then it writes the R channel's nats of every image of ``DIR/test.npy``.

The peer's code is imported from ``--peer`` (its ``pixelcnn`` package), never copied.
"""

from __future__ import annotations

import argparse
import sys
import time
import types

import numpy as np
import torch
import torch.nn.functional as F


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--features", type=int, default=30)
    ap.add_argument("--out-features", type=int, default=30)
    ap.add_argument("--layers", type=int, default=6, help="gated blocks after the causal one")
    ap.add_argument("--first-kernel", type=int, default=7)
    ap.add_argument("--kernel", type=int, default=7)
    ap.add_argument("--levels", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-batch", type=int, default=100)
    ap.add_argument(
        "--recipe",
        choices=["equal", "own"],
        default="equal",
        help="equal: Adam at a constant --lr; own: the peer's train.py defaults (Adam 1e-4, "
        "weight decay 1e-4, gradient norm clipped to 1, CyclicLR 1e-4..1e-3 stepped per epoch)",
    )
    args = ap.parse_args(argv)
    sys.path.insert(0, args.peer)
    from pixelcnn.model import PixelCNN

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    cfg = types.SimpleNamespace(
        hidden_fmaps=args.features,
        out_hidden_fmaps=args.out_features,
        hidden_layers=args.layers,
        causal_ksize=args.first_kernel,
        hidden_ksize=args.kernel,
        color_levels=args.levels,
    )
    model = PixelCNN(cfg)
    num_params = sum(p.numel() for p in model.parameters())
    if args.recipe == "own":
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CyclicLR(opt, 1e-4, 1e-3, cycle_momentum=False)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    train = np.load(f"{args.data}/train.npy")
    order = np.load(f"{args.data}/order_{args.seed}.npy")

    def nats(images):  # uint8 (B, H, W, 1) -> R channel's nats per pixel (B, H, W)
        x = torch.from_numpy(images[..., 0].astype(np.int64))
        rgb = (x.float() / (args.levels - 1))[:, None].repeat(1, 3, 1, 1)
        logits = model(rgb, torch.zeros(len(x), dtype=torch.long))  # (B, L, 3, H, W)
        return F.cross_entropy(logits[:, :, 0], x, reduction="none")

    model.train()
    losses, times = [], []
    per_epoch = len(train) // len(order[0])
    for i, idx in enumerate(order):
        t0 = time.perf_counter()
        loss = nats(train[idx]).mean()
        opt.zero_grad()
        loss.backward()
        if args.recipe == "own":
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        opt.step()
        if args.recipe == "own" and (i + 1) % per_epoch == 0:
            sched.step()
        losses.append(loss.item())
        times.append(time.perf_counter() - t0)

    model.eval()
    test = np.load(f"{args.data}/test.npy")
    out = []
    with torch.no_grad():
        for i in range(0, len(test), args.eval_batch):
            out.append(nats(test[i : i + args.eval_batch]).double().sum(dim=(1, 2)).numpy())
    np.savez(
        args.out,
        test_nats=np.concatenate(out),
        train_loss=np.asarray(losses),
        step_seconds=np.asarray(times),
        num_params=num_params,
    )


if __name__ == "__main__":
    main()
