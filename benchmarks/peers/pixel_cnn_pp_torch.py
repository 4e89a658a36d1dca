"""The peer's side of ``benchmarks/equal_budget.py pixelcnn_pp``: pclucas14/pixel-cnn-pp.

Run with a Python that has torch (this file needs only torch and numpy, never jaxar):

    PY pixel_cnn_pp_torch.py --peer CHECKOUT --data DIR --seed S --out FILE.npz
    PY pixel_cnn_pp_torch.py --peer CHECKOUT --data DIR --seed S --init-out FILE.npz

It builds the peer's ``PixelCNN`` (``model.py``) for grey images and trains it with the peer's
own loss (``utils.discretized_mix_logistic_loss_1d``, summed over the batch, as its ``main.py``
does) and ``torch.optim.Adam``, on the batches ``DIR/order_S.npy`` lists (indices into
``DIR/train.npy``, uint8 images ``(N, 28, 28, 1)``), one thread. Then it writes the network's
outputs on ``DIR/test.npy`` (evaluation mode, NHWC, the peer's layout: logits, then means and
log-scales), so the harness scores them with jaxar's exact discretized logistic mixture, and the
peer's own test loss beside them.

The peer's code is imported from ``--peer``, never copied, with two in-memory adjustments for
a CPU and Python 3 (the checkout is not touched): its loss calls ``.cuda()`` on a buffer, so
``torch.Tensor.cuda`` is the identity in this process, and ``utils.py`` has one Python 2
statement (``print e``, in ``load_part_of_model``, which this never calls), compiled here as
``print(e)``. ``--dropout`` sets the rate of its ``Dropout2d`` layers (hard-coded 0.5 there).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import types

import numpy as np
import torch


def _load_peer_utils(peer: str) -> None:
    """Import the peer's ``utils.py`` with its one Python 2 print statement made a call."""
    path = os.path.join(peer, "utils.py")
    with open(path) as f:
        source = f.read()
    if source.count("print e\n") != 1:
        raise SystemExit(f"{path}: expected the one Python 2 line 'print e', found another file")
    module = types.ModuleType("utils")
    module.__file__ = path
    exec(compile(source.replace("print e\n", "print(e)\n"), path, "exec"), module.__dict__)
    sys.modules["utils"] = module


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", default="")
    ap.add_argument("--init-out", default="", help="write the initial weights here and exit")
    ap.add_argument("--resnets", type=int, default=1)
    ap.add_argument("--filters", type=int, default=32)
    ap.add_argument("--mixtures", type=int, default=5)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-batch", type=int, default=100)
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    torch.Tensor.cuda = lambda self, *a, **k: self  # the peer's loss moves a buffer to the GPU
    sys.path.insert(0, args.peer)
    _load_peer_utils(args.peer)
    from model import PixelCNN  # the peer's
    from utils import discretized_mix_logistic_loss_1d  # the peer's

    torch.manual_seed(args.seed)
    net = PixelCNN(
        nr_resnet=args.resnets,
        nr_filters=args.filters,
        nr_logistic_mix=args.mixtures,
        input_channels=1,
    )
    for m in net.modules():
        if isinstance(m, torch.nn.Dropout2d):
            m.p = args.dropout
    num_params = sum(p.numel() for p in net.parameters())
    if not (args.out or args.init_out):
        raise SystemExit("give --out (train) or --init-out (initial weights only)")
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)

    to_input = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0 * 2.0 - 1.0).permute(
        0, 3, 1, 2
    )  # the peer's rescaling of ToTensor's [0, 1] to [-1, 1], NCHW
    train = np.load(f"{args.data}/train.npy")
    order = np.load(f"{args.data}/order_{args.seed}.npy")
    dims = int(np.prod(train.shape[1:]))
    if args.init_out:
        with torch.no_grad():
            x = to_input(train[order[0]])
            first = float(discretized_mix_logistic_loss_1d(x, net(x))) / len(order[0]) / dims
        state = {k: v.numpy() for k, v in net.state_dict().items()}
        np.savez(args.init_out, first_batch_nats=np.asarray(first), **state)
        return
    losses, times = [], []
    net.train()
    for idx in order:
        t0 = time.perf_counter()
        x = to_input(train[idx])
        loss = discretized_mix_logistic_loss_1d(x, net(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(float(loss) / len(idx) / dims)  # nats per dimension

    test = np.load(f"{args.data}/test.npy")
    net.eval()
    net.init_padding = None  # the peer caches a padding of the first batch's size
    outs, test_nats = [], 0.0
    with torch.no_grad():
        for i in range(0, len(test), args.eval_batch):
            x = to_input(test[i : i + args.eval_batch])
            net.init_padding = None
            out = net(x)
            test_nats += float(discretized_mix_logistic_loss_1d(x, out))
            outs.append(out.permute(0, 2, 3, 1).numpy().astype(np.float32))
    np.savez(
        args.out,
        outputs=np.concatenate(outs),
        train_loss=np.asarray(losses),
        step_seconds=np.asarray(times),
        peer_test_nats=np.asarray(test_nats),
        num_params=np.asarray(num_params),
    )


if __name__ == "__main__":
    main()
