"""specguard inside tools people already run: `specguard.integrations.litellm` (a LiteLLM proxy
guardrail). Each module imports its tool; nothing here is imported by `import specguard`."""
