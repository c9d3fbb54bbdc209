"""A small convolutional network on the 8×8 digits, written as a user of bpresearch would.

``[model] kind = "models.py:cnn"`` names the factory ``cnn`` below. bpresearch calls it with
the ``[model]`` section's other keys (``channels``) and ``n_out`` (10 classes on the digits),
and it returns ``(init, apply)``: ``init(key, x) -> params`` for one batch ``x`` of inputs,
``apply(params, x) -> logits`` of shape (batch, n_out). Pure JAX, params any pytree.

The digits arrive as rows of 64 standardized pixels; ``apply`` reshapes them to 8×8 images.
"""

import jax
import jax.numpy as jnp


def conv3x3(images, w):
    """A 3×3 convolution with zero padding ("same"): images (N, H, W), filters w (3, 3, C) -> (N, H, W, C).

    Written as a sum of nine shifted images times a filter tap: a matrix product that stays
    fast when bpresearch vmaps it over learning rates and seeds (a vmapped ``lax.conv`` becomes
    a grouped convolution, slow on a CPU).
    """
    _, h, wd = images.shape
    padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1)))
    patches = jnp.stack([padded[:, i:i + h, j:j + wd] for i in range(3) for j in range(3)], axis=-1)
    return patches @ w.reshape(9, -1)


def cnn(n_out, channels=8, side=8):
    """3×3 convolution (``channels`` filters, same padding) → ReLU → 2×2 max pooling → dense.

    Args:
        n_out: outputs (classes).
        channels: filters of the convolution.
        side: the images are side × side pixels (8 for the digits).
    """
    pooled = (side // 2) ** 2 * channels

    def init(key, x):
        assert x.shape[1] == side * side, f"expected {side * side} pixels per example, got {x.shape[1]}"
        k_conv, k_dense = jax.random.split(key)
        he = jnp.sqrt(2.0 / 9.0)   # fan-in of a 3×3 filter on one input channel
        return {"conv": {"w": he * jax.random.normal(k_conv, (3, 3, channels)), "b": jnp.zeros(channels)},
                "dense": {"w": jax.random.normal(k_dense, (pooled, n_out)) / jnp.sqrt(pooled),
                          "b": jnp.zeros(n_out)}}

    def apply(params, x):
        h = jax.nn.relu(conv3x3(x.reshape(-1, side, side), params["conv"]["w"]) + params["conv"]["b"])
        h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        return h.reshape(h.shape[0], -1) @ params["dense"]["w"] + params["dense"]["b"]

    return init, apply
