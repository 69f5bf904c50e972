"""specguard: a test-time safety specification runtime for LLMs.

    from specguard import Runtime, load_backend, Policy, user
    rt = Runtime(load_backend("embedded"), policy=Policy.load("policy.yaml"))
    result = rt.chat_sync([user("How do I bake bread?")])

Names load on first use, so `import specguard` stays light (no LangGraph, web framework or
model code until a name that needs it is used). Everything here is runtime code: the upper
layers (specguard.agents, specguard.evals) are imported by name, never from here.
"""

from __future__ import annotations

from ._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "ChatResult": "core",
    "Runtime": "core",
    "StreamEvent": "core",
    "load_backend": "backends",
    "Backend": "backends",
    "SpecguardError": "errors",
    "Policy": "policy",
    "Action": "report",
    "SafetyReport": "report",
    "RoleBackends": "roles",
    "RoleName": "roles",
    "Capabilities": "types",
    "Completion": "types",
    "Cost": "types",
    "GenerationParams": "types",
    "Message": "types",
    "Role": "types",
    "StreamChunk": "types",
    "Usage": "types",
    "assistant": "types",
    "system": "types",
    "user": "types",
}

__all__ = sorted([*_EXPORTS, "__version__"])


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
