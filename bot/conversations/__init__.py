"""The domain: turns, the conversation service, backends and tools. Knows neither Slack nor HTTP."""
