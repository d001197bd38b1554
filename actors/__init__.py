"""actorsup's child side: the classes users subclass, and the actor runtime."""

from ._base import Actor as Actor
from ._base import CronTask as CronTask

__all__ = ["Actor", "CronTask"]
