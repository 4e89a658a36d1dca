"""Diagonal BiLSTM on CIFAR-10 (32x32 RGB, 256 levels), the 12-layer setting of van den Oord
et al. 2016 ("Pixel Recurrent Neural Networks"), for which the paper reports 3.00 bits/dim.

Overrides row_lstm_cifar10.py (same data, widths, optimiser and schedule) with 12 Diagonal
BiLSTM layers of 126 hidden units per direction.

Run (an accelerator; tfds must have cifar10 prepared, e.g. ``tfds build cifar10``):
    jaxar train --config experiments/configs/diagonal_bilstm_cifar10.py \
        --workdir runs/diagonal_bilstm_cifar10

Compile time of the jitted train step (the runner's ``make_train_step``, batch 64, float32),
measured on a 2-core CPU shared with other jobs (load average about 9), jax 0.10.2: trace and
lower 10.7 s, XLA compile 42.3 s. Command (from the repository root)::

    python - experiments/configs/diagonal_bilstm_cifar10.py <<'EOF'
    import sys, time, jax, jax.numpy as jnp
    from jaxar import config, train
    from jaxar.data import DataInfo
    c = config.load(sys.argv[1])
    model = train.build_model(c, DataInfo("tfds:cifar10", (32, 32, 3), 256, 10))
    tx, _ = train.make_optimizer(c)
    init = lambda: train.create_train_state(model, tx, jax.random.key(0), c.ema_decay > 0)
    state = jax.eval_shape(init)
    batch = {"x": jax.ShapeDtypeStruct((c.batch_size, 32, 32, 3), jnp.int32),
             "label": jax.ShapeDtypeStruct((c.batch_size,), jnp.int32)}
    step = jax.jit(train.make_train_step(model, tx, ema_decay=c.ema_decay))
    t0 = time.time(); lowered = step.lower(state, batch)
    t1 = time.time(); lowered.compile(); t2 = time.time()
    print(f"{sys.argv[1]}: trace+lower {t1 - t0:.1f} s, XLA compile {t2 - t1:.1f} s")
    EOF

Result: not yet measured. What is needed: CIFAR-10 prepared as array_record (``tfds build
cifar10 --file_format=array_record`` needs internet and TensorFlow, neither on the development
machine) and an accelerator for the full budget.

Small CPU variant (same data; 2 layers of 12 hidden units; the budget of
``jaxar.config.runlocal``), for checking the pipeline on a laptop; needs the same data:
    jaxar train --config experiments/configs/diagonal_bilstm_cifar10.py:runlocal \
        --workdir runs/diagonal_bilstm_cifar10_runlocal
"""

import ml_collections

from jaxar import config as jaxar_config


def get_config(arg: str = ""):
    c = jaxar_config.load("row_lstm_cifar10.py", __file__)
    c.model_name = "diagonal_bilstm"
    c.model = ml_collections.ConfigDict(
        dict(hidden=126, num_layers=12, output_features=1023, first_kernel=7)
    )
    return jaxar_config.runlocal(c, arg, hidden=12, num_layers=2, output_features=48)
