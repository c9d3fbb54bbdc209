"""What an experiment file may hold: one declaration per key, grouped by section.

Each section is a frozen dataclass whose fields are its keys. A field carries its ``Key``:
the default, the check, why that default, and what the key applies to (a choice of the
section's ``SELECTOR``: the data source, the model kind, the optimizer kind). What a
config holds, which defaults follow other settings, what applies to a run: all of it is
computed from these declarations (``spec.resolve``).

A resolved config stays a nested dict: it is what is hashed and logged. ``spec_of`` reads
one into its typed, read-only form (``Spec``), with tuples for lists.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bpresearch.core.activations import ACTIVATIONS
from bpresearch.core.models import INITS
from bpresearch.core.optim import OPTIMIZERS
from bpresearch.spec import checks as ck
from bpresearch.spec import usercode


@dataclass(frozen=True)
class Key:
    """One setting of an experiment file.

    Attributes:
        default: the value when the file does not set it; None with ``derive``: it follows other settings.
        check: validates and normalizes a given value; None for a key the grid sets per run (not the file).
        why: why this default.
        applies: the choices of the section's ``SELECTOR`` it means something for; () for every choice.
        when: a further condition on the section's resolved values for it to mean something.
        derive: ``config -> value``, the default of a key whose default is None.
        idle: the one value it is given where it does not apply (None: it keeps its value).
        omit_unset: left out of the resolved config while None.
    """
    default: Any
    check: Callable[[Any], Any] | None
    why: str
    applies: tuple[str, ...] = ()
    when: Callable[[dict], bool] | None = None
    derive: Callable[[dict], Any] | None = None
    idle: Any = None
    omit_unset: bool = False

    @property
    def grid(self) -> bool:
        """Set per run by the grid (``experiment.load``), never written in a file."""
        return self.check is None


def key(default, check, why, **kw) -> Any:
    """A section field declaring one settable key (``Key``'s arguments)."""
    k = Key(default, check, why, **kw)
    return field(metadata={"key": k}, **({"default": None} if k.omit_unset else {}))


def grid(why, applies=(), when=None) -> Any:
    """A section field the grid sets per run; absent (None) where it does not apply."""
    return field(metadata={"key": Key(None, None, why, applies, when)},
                 **({"default": None} if applies or when else {}))


def user_options() -> Any:
    """A user-code section's keyword arguments for its function (no key of its own: what the file
    wrote); None in a section of built-in kinds."""
    return field(default=None)


def user_code(section: dict) -> bool:
    """The section's kind names user code (``spec.usercode``): a ``Key.when`` marking the keys that
    apply to user code only."""
    return usercode.is_user(section.get("kind"))


def applies_to(k: Key, choice) -> bool:
    """``k`` means something for this choice of its section's selector."""
    return not k.applies or choice in k.applies


def _csv(data: dict) -> bool:
    """A ``.csv`` file source (only a .csv names its target column)."""
    return str(data.get("path") or "").endswith(".csv")


def _any_diagnostic(diag: dict) -> bool:
    """Any diagnostic measured (``every`` is then their spacing)."""
    return any(diag.get(k) for k in ("sharpness", "noise_scale", "hessian_noise_scale"))


def _digits(c: dict) -> bool:
    """The config's data are the digits."""
    return c["data"]["source"] == "digits"


def _mlp(c: dict) -> bool:
    """The config's model is an MLP."""
    return c["model"]["kind"] == "mlp"


TEACHER = ("teacher",)
WITH_UNITS = ("neuron", "mlp")
PROBABILITY = ck.number(0.0, 1.0, hi_open=True)


@dataclass(frozen=True, kw_only=True)
class Top:
    """The keys above every section."""
    name: str = key(None, ck.string, "required: it names the MLflow experiment, which no default could")
    description: str = key("", ck.string, "optional prose for `bpresearch list` and the report")


@dataclass(frozen=True, kw_only=True)
class Data:
    """``[data]``: the examples."""
    SELECTOR: ClassVar[str] = "source"
    source: str = key("digits", ck.choice("digits", "teacher", "file", "seed"),
                      "scikit-learn bundles the digits: the default experiment needs no file")
    path: str | None = key(None, ck.optional(ck.string), "no default file: a file source names its own "
                           "(.npz with X, y[, X_test, y_test], or .csv)", applies=("file",))
    target_column: str = key("y", ck.string, "the name .npz files give their targets; read from a .csv only",
                             applies=("file",), when=_csv)
    test_fraction: float = key(None, ck.optional(PROBABILITY), "the digits hold out a stratified fifth for a "
                               "test loss; a user's file is all training data unless it asks",
                               applies=("digits", "file"), derive=lambda c: 0.2 if _digits(c) else 0.0)
    split_seed: int = key(0, ck.integer(lo=0), "one fixed split, the same in every run",
                          applies=("digits", "file"))
    n_train: int = key(256, ck.integer(lo=1), "a power of two: batch sizes 1, 2, 4, … reach the full batch",
                       applies=TEACHER)
    n_test: int = key(0, ck.integer(lo=0), "the training loss is what is studied; a test set is opt-in",
                      applies=TEACHER)
    n_features: int = key(8, ck.integer(lo=1), "a small input: a sweep of hundreds of runs trains in seconds",
                          applies=TEACHER)
    noise: float = key(0.0, ck.number(lo=0.0), "noiseless: the minimum loss is 0, so loss targets are absolute",
                       applies=TEACHER)
    teacher_activation: str = key("identity", ck.choice(*ACTIVATIONS), "a linear teacher, y = X·w* + b*: the "
                                  "student solves least squares", applies=TEACHER)
    teacher_bias: bool = key(False, ck.boolean, "b* = 0 unless asked (true: b* ~ N(0, 1)), so a student "
                             "without a bias can match it", applies=TEACHER)
    seed: int = key(0, ck.integer(lo=0), "the data stay fixed across runs; run seeds vary the init and batches",
                    applies=TEACHER)
    target: float = key(-10.0, ck.number(), "the worked example's Target (docs/seed.md §4-5)", applies=("seed",))
    sha256: str | None = grid("the file's content, set on loading: edited data never resume old runs",
                              applies=("file",))


@dataclass(frozen=True, kw_only=True)
class Model:
    """``[model]``: the network."""
    SELECTOR: ClassVar[str] = "kind"
    kind: str = key("mlp", ck.or_user(ck.choice("neuron", "mlp", "seed_graph"), usercode.is_file, "file.py:factory"),
                    "the network for the default data, the digits; \"file.py:factory\" names one's own")
    activation: str = key(None, ck.optional(ck.choice(*ACTIVATIONS)), "relu in an MLP's hidden layers; "
                          "identity makes a neuron linear (or softmax) regression",
                          applies=WITH_UNITS, derive=lambda c: "relu" if _mlp(c) else "identity")
    bias: bool = key(True, ck.boolean, "a neuron has b; false is the seed's b = 0 (then b is no parameter)",
                     applies=("neuron",))
    init: str = key(None, ck.optional(ck.choice(*INITS)), "glorot, or an MLP's hidden units stay identical; "
                    "zeros for a neuron, which has no symmetry to break",
                    applies=WITH_UNITS, derive=lambda c: "glorot" if _mlp(c) else "zeros")
    init_scale: float = key(1.0, ck.number(lo=0.0, lo_open=True), "init = \"normal\" draws N(0, 1) unless "
                            "asked", applies=WITH_UNITS, when=lambda m: m.get("init") == "normal")
    hidden: tuple[int, ...] = key([64, 32], ck.list_of(ck.integer(lo=1)), "64-64-32-10 on the digits: two "
                                  "hidden layers that train in seconds on a CPU", applies=("mlp",))
    start: tuple[float, ...] = key([-2.0, 5.0, -4.0], ck.list_of(ck.number(), exact_len=3),
                                   "the worked example's x, y, z (docs/seed.md §4-5)", applies=("seed_graph",))
    sha256: str | None = grid("the file's content, set on loading: an edited model never resumes old runs",
                              when=user_code)
    options: dict = user_options()


@dataclass(frozen=True, kw_only=True)
class Loss:
    """``[loss]``: what is minimized."""
    SELECTOR: ClassVar[str] = "kind"
    kind: str = key(None, ck.optional(ck.or_user(ck.choice("half_mse", "cross_entropy"), usercode.is_file,
                                                          "file.py:function")),
                    "softmax cross-entropy for the digits' classes; ½ squared error for teacher, file and seed "
                    "targets; \"file.py:function\" names one's own", derive=lambda c: "cross_entropy" if _digits(c)
                    else "half_mse")
    classes: bool = key(None, ck.optional(ck.boolean), "a loss of one's own gets class logits (one output a "
                        "class, integer labels) on the digits, one output an example elsewhere",
                        when=user_code, derive=lambda c: _digits(c) if usercode.is_file(c["loss"]["kind"])
                        else None, omit_unset=True)
    sha256: str | None = grid("the file's content, set on loading: an edited loss never resumes old runs",
                              when=user_code)
    options: dict = user_options()


@dataclass(frozen=True, kw_only=True)
class Optimizer:
    """``[optimizer]``: the update rule."""
    SELECTOR: ClassVar[str] = "kind"
    kind: str = key("sgd", ck.or_user(ck.choice(*OPTIMIZERS), usercode.is_optax, "optax:name"),
                    "plain gradient descent, the seed's method; \"optax:name\" names any optax optimizer")
    momentum: float = key(0.9, PROBABILITY, "the usual heavy-ball β; 0 for other optimizers, which ignore it, "
                          "so it neither splits groups nor misleads", applies=("momentum",), idle=0.0)
    b1: float = key(0.9, PROBABILITY, "Adam's published default (Kingma & Ba 2015), as optax's",
                    applies=("adam",))
    b2: float = key(0.999, PROBABILITY, "Adam's published default (Kingma & Ba 2015), as optax's",
                    applies=("adam",))
    eps: float = key(1e-8, ck.number(lo=0.0, lo_open=True), "Adam's published default (Kingma & Ba 2015)",
                     applies=("adam",))
    search_scale: float = key(1.0, ck.number(lo=0.0, lo_open=True), "random search draws every parameter "
                              "from N(0, 1) unless asked", applies=("random_search",))
    learning_rate: float = grid("from [sweep] learning_rate, one per run (one value for random search)")
    options: dict = user_options()


@dataclass(frozen=True, kw_only=True)
class Train:
    """``[train]``: the loop, its evaluations and what is logged."""
    steps: int = key(1000, ck.integer(lo=1), "updates per run: enough for full-batch runs on the default "
                     "problems; batch size 1 needs more")
    eval_every: int = key(10, ck.integer(lo=1), "full-set losses every 10 steps (and at the last): steps to "
                          "target are then known within 10 at a tenth of the cost")
    targets: tuple[float, ...] = key([], ck.list_of(ck.number(lo=0.0, lo_open=True)), "none: a reachable "
                                     "full-training-loss target depends on the problem")
    divergence_factor: float = key(1e3, ck.number(lo=1.0, lo_open=True), "a loss above 1000·max(L0, 1) does "
                                   "not come back; a smaller factor would stop transient spikes")
    log_dense: int = key(200, ck.integer(lo=0), "train_loss and grad_norm at every step while they move "
                         "fastest, then every log_every")
    log_every: int | str = key("auto", ck.auto_or(ck.integer(lo=1)), "auto: ≈ 800 more points, so about "
                               "1,000 a curve whatever the steps")
    chunk: int = key(64, ck.integer(lo=1), "configurations per compiled call: bounds memory (a digits group "
                     "stays well under 1 GB)")
    # "When the gradient is small enough, we call it the minimum" (docs/seed.md §3): the first step
    # whose full-batch gradient norm is below grad_tol is recorded (steps_to_grad_tol); the run
    # still takes all its steps.
    grad_tol: float | None = key(None, ck.optional(ck.number(lo=0.0, lo_open=True)), "off: added after "
                                 "config hashes were pinned, so while unset it is left out of the config "
                                 "and older files keep their hash", omit_unset=True)
    batch_size: int = grid("from [sweep] batch_size, \"full\" replaced by the training set's size")
    seed: int = grid("from [sweep] seeds: the init and the batch order")
    full_batch: bool = grid("whether batch_size is the whole training set (\"full\", or its size)")


@dataclass(frozen=True, kw_only=True)
class Diagnostics:
    """``[diagnostics]``: measurements beyond the loss, off unless asked for (they cost compute)."""
    every: int = key(100, ck.integer(lo=1), "steps between measurements after a dense start; each is a pass "
                     "over the set", when=_any_diagnostic)
    sharpness: bool = key(False, ck.boolean, "off: lanczos_iters Hessian-vector products a measurement")
    noise_scale: bool = key(False, ck.boolean, "off: exact B_simple costs per-example gradients of the set")
    lanczos_iters: int = key(20, ck.integer(lo=2), "the top eigenvalue to several digits on the default "
                             "problems", when=lambda d: bool(d.get("sharpness")))
    hessian_noise_scale: bool = key(False, ck.boolean, "off: exact B_noise = tr(HΣ)/(GᵀHG) costs N "
                                    "Hessian-vector products a measurement")


@dataclass(frozen=True, kw_only=True)
class Sweep:
    """``[sweep]``: the grid; each check turns what the file writes into the swept values."""
    learning_rate: Sequence[float] = key([0.1], ck.learning_rates, "the seed's η (docs/seed.md §4-5)")
    batch_size: Sequence[int | str] = key(["full"], ck.batch_sizes, "the whole set: gradient descent, as the seed")
    seeds: Sequence[int] = key(1, ck.seeds, "one seed; more show the spread over inits and batch orders")


# section name ("" for the top level) -> its declaration, in the order files and resolved TOML list them
SECTIONS: dict[str, type] = {"": Top, "data": Data, "model": Model, "loss": Loss, "optimizer": Optimizer,
                             "train": Train, "diagnostics": Diagnostics, "sweep": Sweep}
# the sections of a run's config (``Spec``'s), in their order
CONFIG_SECTIONS = tuple(s for s in SECTIONS if s not in ("", "sweep"))


def declared(section: str) -> dict[str, Key]:
    """Every key of ``section``, the grid's included, in declaration order."""
    return {f.name: f.metadata["key"] for f in dataclasses.fields(SECTIONS[section]) if "key" in f.metadata}


# section -> key -> Key: what a file may set
SCHEMA: dict[str, dict[str, Key]] = {s: {n: k for n, k in declared(s).items() if not k.grid} for s in SECTIONS}


def selector(section: str) -> str | None:
    """The key whose choice decides what else in ``section`` applies (None: everything does)."""
    return getattr(SECTIONS.get(section), "SELECTOR", None)


@dataclass(frozen=True)
class Spec:
    """A resolved run config, typed and read-only: ``spec.optimizer.learning_rate``."""
    name: str
    data: Data
    model: Model
    loss: Loss
    optimizer: Optimizer
    train: Train
    diagnostics: Diagnostics
    swept: Mapping[str, Any]   # dotted key -> this run's value, for what the grid varies


def _typed(value):
    """A list as a tuple (the typed form is read-only); anything else as is."""
    return tuple(value) if isinstance(value, list) else value


def section_of(section: str, values: dict):
    """The typed form of one resolved section (``Data``, ``Model``, …).

    A section naming user code holds only what its file wrote: the other keys take their
    defaults here, and the keys no declaration knows are its function's ``options``.
    """
    keys = declared(section)
    typed = {k: _typed(v) for k, v in values.items() if k in keys}
    if user_code(values) and "options" in (f.name for f in dataclasses.fields(SECTIONS[section])):
        typed.update({k: _typed(copy.deepcopy(d.default)) for k, d in keys.items() if k not in typed and not d.grid
                      and not d.omit_unset})
        typed["options"] = usercode.options(values)
    return SECTIONS[section](**typed)


def spec_of(config: dict | Spec) -> Spec:
    """The typed form of a resolved run config (a ``Spec`` is returned as is)."""
    if isinstance(config, Spec):
        return config
    sections = {s: section_of(s, config[s]) for s in CONFIG_SECTIONS}
    return Spec(name=config.get("name", ""), swept=dict(config.get("swept", {})), **sections)
