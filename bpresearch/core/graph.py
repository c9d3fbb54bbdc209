"""A scalar computational graph: every node holds a value and a gradient.

This is micrograd's design (Karpathy, github.com/karpathy/micrograd, engine.py):
each operation builds its output node together with a small closure that knows
the operation's local derivative; ``backward`` visits the nodes in reverse
topological order and applies the chain rule. Plain Python floats only, so the
worked numbers of docs/seed.md §4-5 can be followed by hand (``seed.py`` drives them).
"""

import math


class Value:
    """A scalar node of a computational graph: its value, its gradient and how it was made.

    Args:
        data: the node's value (converted to float).
        _children: the nodes this one was computed from (set by the operations).
        _op: the operation that produced it, e.g. "+" (set by the operations).
        label: a name to show, e.g. "x".
    """

    def __init__(self, data, _children=(), _op="", label=""):
        self.data = float(data)
        self.grad = 0.0  # d(output of the last backward call) / d(this node)
        self.label = label
        self._op = _op
        self._prev = tuple(_children)
        self._backward = lambda: None  # leaves have no inputs to pass gradient on to

    def __repr__(self):
        name = f"{self.label}=" if self.label else ""
        return f"Value({name}{self.data:g}, grad={self.grad:g})"

    # --- primitive operations: each one knows its own local derivative -------------

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other), "+")

        def _backward():
            # d(a+b)/da = d(a+b)/db = 1; += because a node may feed several others
            self.grad += out.grad
            other.grad += out.grad

        out._backward = _backward
        return out

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other), "*")

        def _backward():
            # d(ab)/da = b, d(ab)/db = a
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad

        out._backward = _backward
        return out

    def __pow__(self, other):
        if not isinstance(other, (int, float)):
            raise TypeError("Value ** only supports int or float exponents")
        out = Value(self.data**other, (self,), f"**{other:g}")

        def _backward():
            self.grad += other * self.data ** (other - 1) * out.grad

        out._backward = _backward
        return out

    def exp(self):
        """e ** self."""
        e = math.exp(self.data)
        out = Value(e, (self,), "exp")

        def _backward():
            self.grad += e * out.grad

        out._backward = _backward
        return out

    def tanh(self):
        """Hyperbolic tangent."""
        t = math.tanh(self.data)
        out = Value(t, (self,), "tanh")

        def _backward():
            self.grad += (1.0 - t * t) * out.grad

        out._backward = _backward
        return out

    def sigmoid(self):
        """Logistic function 1 / (1 + e^-x)."""
        x = self.data
        # Two branches keep exp's argument <= 0, so neither overflows for large |x|.
        if x >= 0:
            s = 1.0 / (1.0 + math.exp(-x))
        else:
            s = math.exp(x) / (1.0 + math.exp(x))
        out = Value(s, (self,), "sigmoid")

        def _backward():
            self.grad += s * (1.0 - s) * out.grad

        out._backward = _backward
        return out

    def relu(self):
        """max(0, x); its gradient at exactly 0 is taken as 0."""
        out = Value(max(0.0, self.data), (self,), "relu")

        def _backward():
            self.grad += (out.data > 0) * out.grad

        out._backward = _backward
        return out

    # --- derived operations: one-liners on the primitives --------------------------

    def __neg__(self):
        return self * -1

    def __sub__(self, other):
        return self + (-other)

    def __truediv__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return self * other**-1

    def __radd__(self, other):  # other + self
        return self + other

    def __rmul__(self, other):  # other * self
        return self * other

    def __rsub__(self, other):  # other - self
        return other + (-self)

    def __rtruediv__(self, other):  # other / self
        return other * self**-1

    # --- the backward pass ----------------------------------------------------------

    def _topo(self):
        """Every node this one depends on (itself included), inputs before outputs."""
        # Iterative depth-first post-order, so long chains (e.g. many training steps
        # unrolled into one graph) do not hit Python's recursion limit.
        order, visited = [], set()
        stack = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in node._prev if id(child) not in visited)
        return order

    def backward(self):
        """Fill every node's ``grad`` with d(self)/d(node) by the chain rule.

        Unlike micrograd, the graph's old gradients are cleared first: each local
        closure accumulates (+=) because a node may feed several others, and a
        second call would otherwise add onto stale intermediate gradients.
        """
        topo = self._topo()
        for node in topo:
            node.grad = 0.0
        self.grad = 1.0  # d(self)/d(self)
        for node in reversed(topo):
            node._backward()

    def zero_grad(self):
        """Set ``grad`` to 0 on this node and every node it depends on."""
        for node in self._topo():
            node.grad = 0.0
