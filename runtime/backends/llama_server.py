"""llama-cpp-python's OpenAI-compatible server, loading models the way the embedded backend
does (no extra CPU buffer types: see embedded.without_extra_buffers). Same flags:

    python -m specguard.backends.llama_server --model model.gguf --port 8080
"""

from __future__ import annotations

import runpy

from ..errors import require
from .embedded import without_extra_buffers


def main() -> None:
    llama_cpp = require("llama_cpp", "embedded")
    require("llama_cpp.server", "test")  # llama-cpp-python[server]
    llama_cpp.llama_cpp.llama_model_default_params = without_extra_buffers(llama_cpp)
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
