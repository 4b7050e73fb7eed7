"""Grace: a governance and immune runtime for autonomous software.

Every autonomous action is decided, recorded with proof, and healed under governance.
"""

from grace._version import __version__
from grace.config import GraceSettings

__all__ = ["GraceSettings", "__version__"]
