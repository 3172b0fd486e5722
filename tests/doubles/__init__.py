"""Test doubles that stand in for the external services the bot talks to."""
