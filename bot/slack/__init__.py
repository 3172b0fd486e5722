"""Slack side: Bolt listeners, rendering, replies and the HTTP front door. Knows Slack, not OpenAI."""
