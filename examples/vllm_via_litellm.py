"""Point the runtime at a model served by vLLM (any OpenAI-compatible server works the same).

    vllm serve Qwen/Qwen2.5-7B-Instruct --port 8001            # on the GPU box
    python examples/vllm_via_litellm.py http://gpu-box:8001/v1 Qwen/Qwen2.5-7B-Instruct

The same from the command line:
    specguard serve --backend litellm:hosted_vllm/Qwen/Qwen2.5-7B-Instruct \
        --api-base http://gpu-box:8001/v1 --policy specs/policies/two_tenants.yaml
(`--backend openai:<model>` uses the lean httpx client instead of litellm.)
"""

import sys

from specguard import Runtime, load_backend, user

api_base, model = sys.argv[1], sys.argv[2]
backend = load_backend(f"litellm:hosted_vllm/{model}", api_base=api_base)
runtime = Runtime(backend)
result = runtime.chat_sync([user("What should I pack for a winter hike?")])
print(result.answer)
print(result.report.model_dump_json(indent=2))
