"""The Slack workspace the slack_double fixture seeds: its channel, Ada's IM, the bot and two people."""

CHANNEL = "C0GENERAL"
DM = "D0ADA"  # Ada's IM with the bot
BOT = "U0BOT"
ADA = "U0ADA"
BOB = "U0BOB"
