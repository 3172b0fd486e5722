"""`python -m bot shell`: the assistant in a terminal, through the same conversation pipeline as Slack."""
