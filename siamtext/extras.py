"""Optional dependencies: import one, or say which extra of siamtext installs it."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, feature: str, alternative: str | None = None) -> ModuleType:
    """Import ``module`` for ``feature``; a missing one names ``pip install 'siamtext[extra]'``.

    Args:
        module: The module to import, e.g. ``"faiss"`` or ``"ray.data"``.
        extra: The extra of siamtext that installs it.
        feature: What needs it, for the message (``"method='faiss'"``).
        alternative: Another way to install it, added to the message.

    Raises:
        ImportError: Naming the extra (and the alternative).
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        also = f" (or {alternative})" if alternative else ""
        raise ImportError(f"{feature} needs {module.split('.')[0]}, which is not installed: "
                          f"pip install 'siamtext[{extra}]'{also}") from err
