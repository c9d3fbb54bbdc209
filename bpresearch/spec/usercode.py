"""A researcher's own model, loss or optax optimizer, named in the experiment file.

- ``[model] kind = "models.py:cnn"``: a Python file, relative to the experiment file, and a
  factory in it; ``factory(**options, n_out=…) -> (init, apply)``.
- ``[loss] kind = "losses.py:huber"``: ``fn(outputs, y) -> per-example losses``.
- ``[optimizer] kind = "optax:adamw"``: any optax optimizer, the section's other keys its
  keyword arguments.

A file is read only from the experiment's folder tree; loading it runs its code. Each
file is executed once per content (its SHA-256, which also enters the run's config), and
the loaded function is kept in this process under ``(kind, sha256)``: ``workload`` finds
it there. Every problem is a ``UserCodeError`` whose message is the problem only; the
caller names the experiment file and the key.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

OPTAX = "optax:"
# keys of a user-code section that the harness sets itself (never a factory's argument)
RESERVED = ("kind", "sha256", "learning_rate", "momentum", "classes")

_LOADED: dict[tuple[str, str], Callable] = {}   # (kind, sha256) -> the named function


class UserCodeError(ValueError):
    """User code that cannot be used; the message is the problem, in one line."""


def is_optax(kind) -> bool:
    """``optax:<name>``."""
    return isinstance(kind, str) and kind.startswith(OPTAX)


def is_file(kind) -> bool:
    """``<file>.py:<name>``: a function in a Python file."""
    return isinstance(kind, str) and ":" in kind and kind.split(":", 1)[0].endswith(".py")


def is_user(kind) -> bool:
    """A kind naming user code (a file's function, or an optax optimizer)."""
    return is_file(kind) or is_optax(kind)


def split(kind: str) -> tuple[str, str]:
    """``"models.py:cnn"`` -> ``("models.py", "cnn")``."""
    file, _, name = kind.partition(":")
    if not name.isidentifier():
        raise UserCodeError(f"{kind!r}: {name!r} is not a Python name (expected file.py:function)")
    return file, name


def resolve(base: Path, file: str) -> Path:
    """``file`` under the experiment's folder ``base``; UserCodeError outside it or missing."""
    root = Path(base).resolve()
    p = (root / file).resolve()
    if not p.is_relative_to(root):
        raise UserCodeError(f"{file}: outside the experiment's folder {root} (user code is read from there only)")
    if not p.is_file():
        raise UserCodeError(f"{file}: no such file in {root}")
    return p


def file_text(base: Path, kind: str) -> tuple[str, str]:
    """The file a kind names, relative to ``base``: ``(name relative to base, text)``."""
    file, _ = split(kind)
    p = resolve(base, file)
    return p.relative_to(Path(base).resolve()).as_posix(), p.read_text()


def load(base: Path, kind: str) -> str:
    """Load the function ``kind`` names (its file under ``base``) once per content; its file's SHA-256."""
    file, name = split(kind)
    p = resolve(base, file)
    data = p.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if (kind, sha) in _LOADED:
        return sha
    module_name = f"bpresearch_user_{sha[:16]}_{p.stem}"
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, p)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # the user's code: any error is theirs, reported in one line
            del sys.modules[module_name]
            raise UserCodeError(f"{file}: loading it raised {type(e).__name__}: {one_line(e)}") from None
    fn = getattr(module, name, None)
    if fn is None or not callable(fn):
        raise UserCodeError(f"{file} defines no function {name!r}")
    _LOADED[(kind, sha)] = fn
    return sha


def lookup(kind: str, sha: str) -> Callable:
    """The function loaded for ``kind`` at content ``sha`` (``load`` must have run in this process)."""
    try:
        return _LOADED[(kind, sha)]
    except KeyError:
        raise UserCodeError(f"{kind}: not loaded in this process (experiment.load loads user code)") from None


def one_line(e: BaseException) -> str:
    """An exception's message on one line."""
    return " ".join(str(e).split()) or type(e).__name__


def options(section: dict) -> dict[str, Any]:
    """The keyword arguments a user-code section gives its function: its keys but the ``RESERVED``."""
    return {k: v for k, v in section.items() if k not in RESERVED}


def optax_function(kind: str) -> Callable:
    """The optax optimizer ``optax:<name>``; UserCodeError for an unknown name."""
    import optax

    name = kind[len(OPTAX):]
    fn = getattr(optax, name, None) if name.isidentifier() and not name.startswith("_") else None
    if fn is None or not callable(fn) or inspect.isclass(fn):
        raise UserCodeError(f"optax has no optimizer {name!r}")
    return fn


def takes_momentum(kind: str) -> bool:
    """Whether the optimizer ``kind`` names (``optax:<name>``) has a ``momentum`` argument: the
    vmapped momentum reaches it (a file's model or loss has none)."""
    if not is_optax(kind):
        return False
    try:
        return "momentum" in inspect.signature(optax_function(kind)).parameters
    except (UserCodeError, TypeError, ValueError):
        return False


def check_optax(kind: str, kwargs: dict) -> None:
    """``optax:<name>`` exists and takes ``learning_rate`` and ``kwargs``; else UserCodeError."""
    fn = optax_function(kind)
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        raise UserCodeError(f"{kind}: its arguments cannot be read") from None
    if "learning_rate" not in params:
        raise UserCodeError(f"{kind} takes no learning_rate: not an optimizer")
    try:
        inspect.signature(fn).bind(learning_rate=0.1, **kwargs)
    except TypeError as e:
        raise UserCodeError(f"{kind}: {one_line(e)} (it takes {', '.join(params)})") from None
