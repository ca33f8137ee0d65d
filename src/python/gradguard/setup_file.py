"""Python files that describe what to check: run as a script, they define ``setup()`` returning a dict. Used by
``gradguard check FILE`` (a model for the gradient-flow check) and by the gate's correctness section (models and
modules of a project's own adapters)."""
from __future__ import annotations

import runpy
from pathlib import Path


def load_setup(path: str | Path, required: set[str], optional: set[str], argument: str = "file") -> dict:
    """Runs ``path`` and returns what its setup() returns, checked for the ``required`` and ``optional`` keys; every
    mistake is a ValueError/FileNotFoundError naming ``argument`` and what was expected."""
    path = Path(path)
    expected = ", ".join(sorted(required)) + (f" (optional: {', '.join(sorted(optional))})" if optional else "")
    if not path.is_file():
        raise FileNotFoundError(f"argument '{argument}': expected a Python file that defines setup(), got '{path}' "
                                "(not found)")
    namespace = runpy.run_path(str(path), run_name="__gradguard_check__")
    setup = namespace.get("setup")
    if not callable(setup):
        raise ValueError(f"argument '{argument}': expected '{path}' to define a function setup() returning a dict "
                         f"with {expected}, got none")
    spec = setup()
    if not isinstance(spec, dict) or not required <= set(spec):
        missing = sorted(required - set(spec)) if isinstance(spec, dict) else sorted(required)
        raise ValueError(f"argument '{argument}': expected setup() in '{path}' to return a dict with {expected}, got "
                         f"{type(spec).__name__}" + (f" without {', '.join(missing)}" if isinstance(spec, dict) else ""))
    unknown = set(spec) - required - optional
    if unknown:
        raise ValueError(f"argument '{argument}': setup() in '{path}' returned unknown keys {sorted(unknown)}; "
                         f"expected {expected}")
    return spec
