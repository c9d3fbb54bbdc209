"""The seed's worked example (docs/seed.md §4-5), as ``bpresearch seed-example`` prints it.

f = (x + y)·z built from ``graph.Value`` nodes, backpropagated by hand; the loss
½(f − target)² minimised by gradient descent; and, to explain a run that does not
converge, the loss Hessian in closed form and its eigenvalues (the 2/λ_max bound).
"""

import math

from bpresearch.core.graph import Value

# A run whose last loss is below this counts as converged in the text report.
CONVERGED_LOSS = 1e-6

# How each node of the seed graph f = (x + y) * z is computed, for the report.
_SEED_EXPRESSIONS = {"x": "input", "y": "input", "z": "input", "q": "x+y", "f": "q*z"}


def _seed_graph(x, y, z):
    """The seed's graph f = (x + y) * z, labelled; returns its nodes by name."""
    xv, yv, zv = Value(x, label="x"), Value(y, label="y"), Value(z, label="z")
    q = xv + yv
    q.label = "q"
    f = q * zv
    f.label = "f"
    return {"x": xv, "y": yv, "z": zv, "q": q, "f": f}


def _seed_loss(x, y, z, target):
    """Half squared error of the seed graph, backpropagated.

    Returns:
        (loss, nodes): the loss Value and the graph's nodes, whose ``grad`` now
        holds d(loss)/d(node).
    """
    nodes = _seed_graph(x, y, z)
    loss = 0.5 * (nodes["f"] - target) ** 2
    loss.backward()
    return loss, nodes


def seed_loss_hessian(x, y, z, target):
    """Hessian of Loss = ½(f − target)² with f = (x + y)·z, in closed form.

    For L = ½(f − t)²,  ∇²L = ∇f ∇fᵀ + (f − t) ∇²f,  with ∇f = (z, z, x + y) and
    ∇²f having ones at (x, z), (y, z) and their mirror images, zeros elsewhere.

    Args:
        x, y, z: the point.
        target: the regression target t.

    Returns:
        The 3×3 Hessian as a list of rows, in the order x, y, z.
    """
    f = (x + y) * z
    g = (z, z, x + y)
    d2f = ((0, 0, 1), (0, 0, 1), (1, 1, 0))
    return [[g[i] * g[j] + (f - target) * d2f[i][j] for j in range(3)] for i in range(3)]


def symmetric_eigenvalues(a):
    """Eigenvalues of a symmetric 3×3 matrix, largest first.

    Closed form (O. K. Smith, "Eigenvalues of a symmetric 3×3 matrix",
    Comm. ACM 4(4), 1961): shift by the mean eigenvalue, and the roots of the
    depressed characteristic cubic are 2p·cos(φ + 2πk/3).

    Args:
        a: a symmetric 3×3 matrix as a list of rows.

    Returns:
        The three eigenvalues, sorted from largest to smallest.
    """
    off = a[0][1] ** 2 + a[0][2] ** 2 + a[1][2] ** 2
    if off == 0.0:  # already diagonal
        return sorted((a[0][0], a[1][1], a[2][2]), reverse=True)
    q = (a[0][0] + a[1][1] + a[2][2]) / 3.0
    p = math.sqrt(((a[0][0] - q) ** 2 + (a[1][1] - q) ** 2 + (a[2][2] - q) ** 2 + 2.0 * off) / 6.0)
    b = [[(a[i][j] - (q if i == j else 0.0)) / p for j in range(3)] for i in range(3)]
    det_b = (
        b[0][0] * (b[1][1] * b[2][2] - b[1][2] * b[2][1])
        - b[0][1] * (b[1][0] * b[2][2] - b[1][2] * b[2][0])
        + b[0][2] * (b[1][0] * b[2][1] - b[1][1] * b[2][0])
    )
    phi = math.acos(max(-1.0, min(1.0, det_b / 2.0))) / 3.0  # clamp: rounding can leave [-1, 1]
    largest = q + 2.0 * p * math.cos(phi)
    smallest = q + 2.0 * p * math.cos(phi + 2.0 * math.pi / 3.0)
    return [largest, 3.0 * q - largest - smallest, smallest]  # the trace fixes the middle one


def seed_example(x=-2.0, y=5.0, z=-4.0, target=-10.0, lr=0.1, steps=1):
    """Run the seed's worked example: forward, backward, loss and gradient descent.

    f = (x + y)·z is built from labelled nodes x, y, z, q = x + y, f = q·z and
    backpropagated from f; then Loss = ½(f − target)² is backpropagated to x, y, z
    and ``steps`` updates v ← v − lr·∂Loss/∂v are made.

    Args:
        x, y, z: the starting inputs (docs/seed.md: −2, 5, −4).
        target: the target for f (docs/seed.md: −10).
        lr: the learning rate η (docs/seed.md: 0.1).
        steps: how many gradient-descent updates to record in ``history`` (>= 0).

    Returns:
        A dict of plain floats:
        ``nodes``: {name: {"value", "grad"}} for x, y, z, q, f at the start, grad = ∂f/∂node;
        ``loss``: the loss at the start; ``loss_grads``: {x, y, z: ∂Loss/∂v} at the start;
        ``updated``: {x, y, z} after one update; ``lr``, ``target``: as given;
        ``history``: [{"step": k, "x", "y", "z", "f", "loss"}] after k updates,
        k = 0..steps. If the run blows up, the history stops at the first step
        whose loss is not finite, recorded as loss = inf.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")

    nodes = _seed_graph(x, y, z)
    nodes["f"].backward()
    loss, leaves = _seed_loss(x, y, z, target)
    loss_grads = {k: leaves[k].grad for k in "xyz"}
    start = {"x": float(x), "y": float(y), "z": float(z)}

    history = []
    point = dict(start)
    for step in range(steps + 1):
        try:
            step_loss, step_nodes = _seed_loss(point["x"], point["y"], point["z"], target)
            f_value, loss_value = step_nodes["f"].data, step_loss.data
        except OverflowError:  # float ** 2 raises instead of returning inf
            f_value, loss_value = (point["x"] + point["y"]) * point["z"], math.inf
        if not math.isfinite(loss_value):
            history.append({"step": step, **point, "f": f_value, "loss": math.inf})
            break
        history.append({"step": step, **point, "f": f_value, "loss": loss_value})
        if step < steps:
            point = {k: point[k] - lr * step_nodes[k].grad for k in "xyz"}

    return {
        "nodes": {k: {"value": n.data, "grad": n.grad} for k, n in nodes.items()},
        "loss": loss.data,
        "loss_grads": loss_grads,
        "updated": {k: start[k] - lr * loss_grads[k] for k in "xyz"},
        "lr": float(lr),
        "target": float(target),
        "history": history,
    }


def _verdict(result):
    """One line saying plainly whether the history's loss converged, and how it moved."""
    history = result["history"]
    losses = [h["loss"] for h in history]
    first, last, n, lr = losses[0], losses[-1], history[-1]["step"], result["lr"]
    rises = sum(b > a for a, b in zip(losses, losses[1:]))

    if math.isfinite(last) and last < CONVERGED_LOSS and last <= losses[-2]:
        return f"η = {lr:g} converged: the loss fell from {first:.3g} to {last:.3g} in {n} steps"

    if not math.isfinite(last):
        how = f"the loss overflowed at step {n}"
    elif rises == 0:
        how = f"the loss fell steadily from {first:.3g} to {last:.3g} but is not yet below {CONVERGED_LOSS:g}"
    elif last > first:
        how = f"the loss grew from {first:.3g} to {last:.3g} (it rose on {rises} of {n} steps)"
    else:
        peak = max(range(len(losses)), key=losses.__getitem__)
        how = (
            f"the loss jumped around, rising on {rises} of {n} steps (peak {losses[peak]:.3g} at step {peak}),"
            f" and ends at {last:.3g}"
        )

    # The stability bound of GD on a quadratic model of the loss at the start point.
    start = [result["nodes"][k]["value"] for k in "xyz"]
    top = symmetric_eigenvalues(seed_loss_hessian(*start, result["target"]))[0]
    bound = ""
    if top > 0 and lr >= 2 / top:
        bound = (
            f"; gradient descent is only guaranteed stable here for η < 2/λ_max = 2/{top:.3g} ≈ {2 / top:.2g}"
            " (λ_max: top eigenvalue of the loss Hessian at the start)"
        )
    return f"η = {lr:g} did NOT converge in {n} steps: {how}{bound}"


def format_seed_example(result):
    """Render a ``seed_example`` result as readable text.

    Args:
        result: the dict returned by ``seed_example``.

    Returns:
        A multi-line string: the node table (value and ∂f/∂node), the loss, its
        gradients, the one-step update and, when the history has more than one
        update, a per-step table and a line saying whether the loss converged.
    """
    nodes, target, lr = result["nodes"], result["target"], result["lr"]
    lines = ["Computational graph f = (x + y) * z", ""]
    lines.append(f"{'node':<5} {'expression':<10} {'value':>10} {'grad ∂f/∂node':>14}")
    for name, node in nodes.items():
        lines.append(f"{name:<5} {_SEED_EXPRESSIONS.get(name, ''):<10} {node['value']:>10.4g} {node['grad']:>14.4g}")
    lines.append("")
    lines.append(f"Loss = ½(f − target)² = ½({nodes['f']['value']:g} − ({target:g}))² = {result['loss']:.4g}")
    grads = ", ".join(f"∂Loss/∂{k} = {g:.4g}" for k, g in result["loss_grads"].items())
    lines.append(f"Loss gradients: {grads}")
    updated = ", ".join(f"{k} = {v:.4g}" for k, v in result["updated"].items())
    lines.append(f"After one update v ← v − η·∂Loss/∂v with η = {lr:g}: {updated}")

    history = result["history"]
    if len(history) > 2:
        lines += ["", f"{'step':>4} {'x':>11} {'y':>11} {'z':>11} {'f':>11} {'loss':>11}"]
        for h in history:
            lines.append(
                f"{h['step']:>4} {h['x']:>11.4g} {h['y']:>11.4g} {h['z']:>11.4g} {h['f']:>11.4g} {h['loss']:>11.4g}"
            )
        lines.append(_verdict(result))
    return "\n".join(lines)
