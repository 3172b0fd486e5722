"""`/assistant ...` in the shell: the same domain services as Slack's command, answered as terminal text.

The person at the terminal is the admin of their own shell: they may change its assistant and start its
conversation afresh or forget it. Choosing among profiles follows the same rule as in a workspace
(`ChannelAssistants.of_workspace`): the API organisation may hold other teams' assistants.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.conversations.channels import (
    ChannelAssistants,
    ConversationControl,
    assistant_models,
    group_models,
    is_fine_tuned,
)
from bot.conversations.profiles import Profile, ProfileChoices
from bot.shell.editor import Terminal, fill_in
from bot.store.models import Conversation

# The shell's one conversation, in the terms the store and the commands use for a DM's rolling conversation.
SHELL_TEAM = "T0SHELL"
SHELL_CHANNEL = "D0SHELL"
SHELL_USER = "U0SHELL"


@dataclass(frozen=True)
class Subcommand:
    usage: str
    meaning: str
    takes_argument: bool = False


SUBCOMMANDS = {
    "help": Subcommand("/assistant help", "this list"),
    "show": Subcommand("/assistant show", "the assistant the shell uses, and what the conversation remembers"),
    "list": Subcommand("/assistant list", "the assistants the shell may use, and the others on the API account"),
    "use": Subcommand("/assistant use <id or name>", "make the shell use that assistant", takes_argument=True),
    "create": Subcommand("/assistant create", "create an assistant, field by field; the shell uses it"),
    "edit": Subcommand("/assistant edit", "edit the shell's assistant, field by field (Enter keeps a value)"),
    "reset": Subcommand("/assistant reset", "go back to the default assistant"),
    "new": Subcommand("/assistant new", "start afresh, forgetting what came before (kept until forgotten)"),
    "forget": Subcommand(
        "/assistant forget", "delete what the API keeps of the conversation and the bot's records of it (asks first)"
    ),
    "models": Subcommand("/assistant models", "the models available, fine-tuned ones marked"),
    "usage": Subcommand("/assistant usage", "tokens used in the shell, last 7 and 30 days"),
}
SHELL_HELP = (
    "Type a message and press Enter to ask the assistant.\n"
    "/file <path> [message]: share a file (a document, data, a voice clip) with the message, or the next one\n"
    "/image <path> [message]: share an image the same way\n"
    "/quit (or Ctrl-D): leave; the conversation is remembered for the next `python -m bot shell`"
)


def describe(profile: Profile) -> str:
    return f"{profile.name or 'Unnamed'} ({profile.id}, model {profile.model})"


class ShellCommands:
    """`/assistant <subcommand>` for the shell's conversation; each returns the text to show."""

    def __init__(self, *, assistants: ChannelAssistants, control: ConversationControl) -> None:
        self._assistants = assistants
        self._control = control

    def help_text(self) -> str:
        lines = [SHELL_HELP, "", "Commands, as in Slack:"]
        lines += [f"  {sub.usage}: {sub.meaning}" for sub in SUBCOMMANDS.values()]
        return "\n".join(lines)

    async def run(self, text: str, *, terminal: Terminal) -> str:
        name, _, argument = text.strip().partition(" ")
        name, argument = name.lower() or "help", argument.strip()
        subcommand = SUBCOMMANDS.get(name)
        if subcommand is None:
            return f"I don't know /assistant {name}.\n\n{self.help_text()}"
        if bool(argument) != subcommand.takes_argument:
            return f"Usage: {subcommand.usage} ({subcommand.meaning})."
        if name == "help":
            return self.help_text()
        if name == "show":
            return await self._show()
        if name == "list":
            return await self._list()
        if name == "use":
            return await self._use(argument)
        if name == "create":
            return await self._create(terminal)
        if name == "edit":
            return await self._edit(terminal)
        if name == "reset":
            await self._assistants.reset(team_id=SHELL_TEAM, channel_id=SHELL_CHANNEL, user_id=SHELL_USER)
            return f"The shell uses the default assistant again: {describe(await self._assistants.default())}."
        if name == "new":
            return await self.new()
        if name == "forget":
            return await self._forget(terminal)
        if name == "models":
            return await self._models()
        return await self._usage()

    async def conversation(self) -> Conversation | None:
        return await self._control.conversation_for(team_id=SHELL_TEAM, channel_id=SHELL_CHANNEL, is_dm=True)

    async def new(self) -> str:
        conversation = await self.conversation()
        if conversation is None or not await self._control.start_fresh(conversation, since_ts=f"{time.time():.6f}"):
            return "The conversation has no memory yet; the next message starts a fresh one anyway."
        return "Done: the next message starts afresh. The old memory is kept until the conversation is forgotten."

    async def _show(self) -> str:
        current = await self._assistants.current(team_id=SHELL_TEAM, channel_id=SHELL_CHANNEL)
        assistant = current.assistant
        conversation = await self.conversation()
        if conversation is None:
            memory = "no conversation yet"
        elif conversation.backend_state and conversation.backend == self._assistants.backend_name:
            memory = f"kept by the {conversation.backend} backend"
        else:
            memory = "nothing yet; the next message starts it"
        return "\n".join(
            [
                f"The shell uses {describe(assistant)}, "
                f"{'the default assistant' if current.is_default else 'chosen for the shell'}",
                f"Tools: {', '.join(assistant.builtin_tools) or 'none'}",
                *([f"Reasoning effort: {assistant.reasoning_effort}"] if assistant.reasoning_effort else []),
                f"Instructions: {(assistant.instructions or '').strip() or '(none)'}",
                f"The conversation's memory: {memory}",
            ]
        )

    async def _list(self) -> str:
        current = await self._assistants.current(team_id=SHELL_TEAM, channel_id=SHELL_CHANNEL)
        available = await self._assistants.available()
        own = await self._assistants.of_workspace(available, team_id=SHELL_TEAM)
        own_ids = {profile.id for profile in own}
        others = [profile for profile in available if profile.id not in own_ids]
        here = current.assistant.id
        lines = [f"Assistants the shell may use ({len(own)}):"]
        lines += [f"  {describe(profile)}{'  <- in use' if profile.id == here else ''}" for profile in own]
        if others:
            lines += ["", f"Others on the API account ({len(others)}; ALLOWED_PROFILE_IDS lets the shell use one):"]
            lines += [f"  {describe(profile)}" for profile in others]
        return "\n".join(lines)

    async def _use(self, reference: str) -> str:
        found = await self._assistants.find(reference)
        if not found:
            return f"No assistant has the id or name “{reference}”. /assistant list shows them."
        usable = await self._assistants.of_workspace(found, team_id=SHELL_TEAM)
        if not usable:
            return f"“{reference}” is not one the shell may use; add its id to ALLOWED_PROFILE_IDS to allow it."
        if len(usable) > 1:
            return f"Several assistants are named “{reference}” ({', '.join(p.id for p in usable)}); use the id."
        await self._assistants.use(
            team_id=SHELL_TEAM, channel_id=SHELL_CHANNEL, user_id=SHELL_USER, assistant_id=usable[0].id
        )
        return f"The shell now uses {describe(usable[0])}."

    async def _create(self, terminal: Terminal) -> str:
        default = await self._assistants.default()
        spec = await fill_in(
            terminal, choices=await self._choices(default), assistant=None, default_model=default.model
        )
        if spec is None:
            return "Nothing was saved."
        created = await self._assistants.create(
            team_id=SHELL_TEAM, channel_id=SHELL_CHANNEL, user_id=SHELL_USER, spec=spec
        )
        return f"Created {describe(created)}. The shell uses it now."

    async def _edit(self, terminal: Terminal) -> str:
        assistant = (await self._assistants.current(team_id=SHELL_TEAM, channel_id=SHELL_CHANNEL)).assistant
        spec = await fill_in(
            terminal, choices=await self._choices(assistant), assistant=assistant, default_model=assistant.model
        )
        if spec is None:
            return "Nothing was saved."
        saved = await self._assistants.edit(
            team_id=SHELL_TEAM, channel_id=SHELL_CHANNEL, user_id=SHELL_USER, assistant_id=assistant.id, spec=spec
        )
        return f"Saved {describe(saved)}. The shell uses it now."

    async def _choices(self, shown: Profile) -> ProfileChoices:
        """What the form offers: as Slack's, the models of the API (with the one shown), the backend's tools."""
        models = assistant_models(await self._assistants.model_ids())
        if shown.model and shown.model not in models:
            models.insert(0, shown.model)
        return ProfileChoices(
            backend_name=self._assistants.backend_name, tools=self._assistants.builtin_tools(), models=tuple(models)
        )

    async def _forget(self, terminal: Terminal) -> str:
        conversation = await self.conversation()
        if conversation is None:
            return "There is no conversation yet, so there is nothing to forget."
        question = (
            "Forget the conversation? This deletes what the API keeps of it (its memory, its files, its search "
            "index) and the bot's records of it. It cannot be undone. Type yes to forget it:"
        )
        answer = await terminal.ask(question)
        if (answer or "").strip().lower() not in ("y", "yes"):
            return "Nothing was deleted."
        forgotten = await self._control.forget(conversation.id)
        memories = "memory" if forgotten.memories == 1 else "memories"
        return f"Forgotten: deleted {forgotten.memories} conversation {memories}, with their files, and the records."

    async def _models(self) -> str:
        model_ids = await self._assistants.model_ids()
        lines = [f"Models available ({len(model_ids)}):"]
        for group in group_models(model_ids):
            lines.append(f"{group.title}:")
            lines += [f"  {model}{' (fine-tuned)' if is_fine_tuned(model) else ''}" for model in group.model_ids]
        return "\n".join(lines)

    async def _usage(self) -> str:
        windows = await self._assistants.usage(team_id=SHELL_TEAM, user_id=SHELL_USER, channel_id=None)
        lines = ["Tokens used in the shell (prompt + completion):"]
        for window in windows:
            usage = window.by_user
            lines.append(
                f"  Last {window.days} days: {usage.total:,} ({usage.prompt_tokens:,} + {usage.completion_tokens:,})"
            )
        return "\n".join(lines)
