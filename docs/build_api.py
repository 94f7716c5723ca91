"""Build the API reference from the docstrings with pdoc: every public module of texsynth_jax, as HTML.

    python docs/build_api.py docs/api          # then open docs/api/index.html (docs/api is not committed)

Exits 1 and prints them if pdoc warns (a docstring it cannot parse, a module that fails to import); tests/test_docs.py
builds the reference this way, so it cannot rot.
"""

import importlib
import inspect
import os
import pathlib
import pkgutil
import sys
import warnings

# pdoc warns about known limitations of its own that are no fault of a docstring here:
IGNORED = (
    "Import of ArrayTree failed",  # optax's recursive type alias, in an annotation of optimizers.OptaxState
)


def modules() -> list[str]:
    """texsynth_jax and its submodules whose names do not start with an underscore."""
    import texsynth_jax

    found = pkgutil.iter_modules(texsynth_jax.__path__)
    # A submodule the package exports in __all__ (terms) comes with the package's own page already.
    exported = {name for name in texsynth_jax.__all__ if inspect.ismodule(getattr(texsynth_jax, name))}
    return ["texsynth_jax", *sorted(f"texsynth_jax.{m.name}" for m in found
                                    if not m.name.startswith("_") and m.name not in exported)]


def build(output: str) -> list[str]:
    """Write the HTML reference into `output`; returns pdoc's warnings (those in IGNORED left out)."""
    os.environ.setdefault("PDOC_ALLOW_EXEC", "1")  # jax asks the OS for its platform while importing
    import pdoc
    import pdoc.render

    names = modules()
    for name in names:  # imported here first, so that warnings of the imports (JAX's, say) are not pdoc's
        importlib.import_module(name)
    pdoc.render.configure(docformat="google")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*names, output_directory=pathlib.Path(output))
    return [str(w.message) for w in caught if not any(text in str(w.message) for text in IGNORED)]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python docs/build_api.py OUTPUT_FOLDER", file=sys.stderr)
        return 2
    problems = build(argv[0])
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
