"""specguard: a test-time safety specification runtime for LLMs."""

from __future__ import annotations

from .errors import SpecguardError
from .types import Completion, GenerationParams, Message, Role, StreamChunk, Usage

__version__ = "0.1.0"

__all__ = [
    "Completion",
    "GenerationParams",
    "Message",
    "Role",
    "SpecguardError",
    "StreamChunk",
    "Usage",
    "__version__",
]
