"""The official openai client against a running specguard server.

    specguard serve --api-key sg-local-key &
    python examples/openai_client.py
"""

import os

from openai import OpenAI

client = OpenAI(base_url=os.environ.get("SPECGUARD_URL", "http://127.0.0.1:8000/v1"),
                api_key=os.environ.get("SPECGUARD_API_KEY", "sg-local-key"))

raw = client.chat.completions.with_raw_response.create(
    model="specguard", messages=[{"role": "user", "content": "Give me three tips for a job interview."}])
resp = raw.parse()
print(resp.choices[0].message.content)
print("action:", raw.headers["x-specguard-action"], "| specs:", raw.headers["x-specguard-specs"])
print("safety report:", resp.model_extra["specguard"]["decisions"])

print("\nstreaming:")
for chunk in client.chat.completions.create(
        model="specguard", stream=True,
        messages=[{"role": "user", "content": "Write a two-line poem about rain."}]):
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
    if chunk.choices and chunk.choices[0].finish_reason:
        print("\n[report]", chunk.model_extra["specguard"]["action"])
