"""slack-assistant-bot: an OpenAI assistant for a Slack team."""
