"""Grace: a governance and immune runtime for autonomous software.

Every autonomous action is decided, recorded with proof, and healed under governance.
``GraceSettings`` is imported on first use, so tools that need only part of Grace (the
ledger's verification workers, ``grace --version``) start quickly.
"""

from typing import TYPE_CHECKING, Any

from grace._version import __version__

if TYPE_CHECKING:
    from grace.config import GraceSettings

__all__ = ["GraceSettings", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "GraceSettings":
        from grace.config import GraceSettings

        return GraceSettings
    raise AttributeError(f"module 'grace' has no attribute {name!r}")
