"""Slash commands, their buttons and the assistant modal: Bolt listeners that ack at once and convert.

Every listener acks first (Slack wants an answer within 3 s) and hands the slow part to
`BackgroundWork`; answers go to the command's `response_url` (ephemeral unless said otherwise).

"This conversation", for commands that have no thread: in a DM with the bot, the rolling top-level
conversation; in a channel, the conversation there with the most recent message.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.background import BackgroundWork
from bot.conversations.channels import (
    ChannelAssistants,
    ChannelSettings,
    ConversationControl,
    ReplyMode,
    assistant_models,
    group_models,
    is_fine_tuned,
)
from bot.conversations.images import MAX_PROMPT_CHARS, ImageMaker
from bot.conversations.profiles import (
    BUILTIN_TOOLS,
    REASONING_EFFORTS,
    TOOL_LABELS,
    Profile,
    ProfileChoices,
    ProfileSpec,
    not_available,
    spec_problems,
)
from bot.conversations.service import ConversationService, api_failure_reason
from bot.conversations.turn import Surface, Turn
from bot.errors import APIError, APIStatusError, BotError, ConversationBusy, NotFoundError
from bot.slack.directory import UserDirectory
from bot.slack.interactions import Interaction
from bot.slack.render import notice_mrkdwn
from bot.slack.text import to_plain_text
from bot.store.channels import TokenUsage
from bot.store.feedback import GOOD, FeedbackStore
from bot.store.models import Conversation

log = logging.getLogger(__name__)

EDITOR_CALLBACK = "assistant_editor"
FORGET_CONFIRM = "forget_confirm"
FORGET_CANCEL = "forget_cancel"
# The editor's choice of no reasoning effort of the assistant's own (ASSISTANT_REASONING_EFFORT applies).
DEFAULT_EFFORT = "default"
# Slack's limits: a plain_text_input holds 3000 characters, a select 100 options.
MAX_INPUT_CHARS = 3000
MAX_SELECT_OPTIONS = 100
MAX_CHECKBOXES = 10
MCP_SERVERS_BLOCK = "mcp_servers"
MAX_LISTED = 50
INSTRUCTIONS_SUMMARY_CHARS = 300
# Slack's answers to chat.postMessage where the bot cannot post.
CANNOT_POST_ERRORS = {"not_in_channel", "channel_not_found", "is_archived", "restricted_action"}

ASK_USAGE = "Usage: `/ask <question>`, e.g. `/ask What is a good name for our release?`"
IMAGINE_USAGE = "Usage: `/imagine <prompt>`, e.g. `/imagine a lighthouse in a storm, watercolour`"
NOT_IN_CHANNEL = (
    "I'm not in this channel, so I can't post {what} here. "
    "Invite me with `/invite @assistant` and try again, or send me a direct message."
)
REFUSED = (
    "Only workspace admins and owners (and the people the bot's operator named) can change "
    "which assistant a channel uses. `/assistant show` tells you which one it uses now."
)
CONVERSATION_MEANING = (
    "_This conversation_ means: in a DM with me, our top-level conversation; in a channel, "
    "the conversation there with the most recent message."
)
NO_CONVERSATION = "There is no conversation with me here yet, so there is nothing to do."
NOT_YOURS = "Only the people who talked with me in this conversation, and admins, can start it afresh or forget it."
NOT_OF_WORKSPACE = (
    "“{reference}” is not one of this workspace's assistants (the default, one its channels use or one made "
    "here), so no channel here can use it. The bot's operator can allow it by adding its id to "
    "`ALLOWED_PROFILE_IDS`."
)
BUSY = "I'm answering in this conversation right now. Please try again when the answer is done."
REPLY_MODE_MEANINGS = {
    ReplyMode.MENTION: "I answer only when mentioned",
    ReplyMode.THREAD: "I answer when mentioned, and to follow-ups in threads I'm in",
    ReplyMode.ALL: "I answer every new message here in its thread, and follow-ups there",
}
FEEDBACK_ADMINS_ONLY = (
    "Only workspace admins and owners (and the people the bot's operator named) can see or switch feedback."
)
REPLY_ADMINS_ONLY = (
    "Only workspace admins and owners (and the people the bot's operator named) can change when I answer here. "
    "`/assistant show` tells you the mode."
)
LATEST_COMMENTS = 5


@dataclass(frozen=True)
class Invocation:
    """One slash command: who ran it where, and how to answer them."""

    team_id: str
    channel_id: str
    user_id: str
    trigger_id: str
    respond: AsyncRespond
    client: AsyncWebClient
    # When it was run, as a Slack ts: slash commands carry no message ts of their own.
    sent_ts: str = field(default_factory=lambda: f"{time.time():.6f}")

    @property
    def is_dm(self) -> bool:
        return self.channel_id.startswith("D")

    @classmethod
    def of(cls, command: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient) -> Invocation:
        return cls(
            team_id=command.get("team_id") or "",
            channel_id=command.get("channel_id") or "",
            user_id=command.get("user_id") or "",
            trigger_id=command.get("trigger_id") or "",
            respond=respond,
            client=client,
        )


Handler = Callable[[Invocation, str], Awaitable[None]]
# A workspace's MCP server labels an assistant may enable; None where the backend has no MCP tools.
McpServerLabels = Callable[[str], Awaitable[list[str] | None]]


@dataclass(frozen=True)
class Subcommand:
    usage: str
    meaning: str
    handler: Handler
    takes_argument: bool = False
    argument_optional: bool = False


class SlackCommands:
    """`/ask`, `/imagine` and `/assistant ...`, the forget buttons and the assistant editor modal."""

    def __init__(
        self,
        *,
        service: ConversationService,
        assistants: ChannelAssistants,
        control: ConversationControl,
        images: ImageMaker,
        users: UserDirectory,
        background: BackgroundWork,
        channel_settings: ChannelSettings,
        feedback: FeedbackStore,
        mcp: Handler | None = None,  # `/assistant mcp ...` (bot.slack.mcp)
        mcp_servers: McpServerLabels | None = None,  # the servers the form offers (bot.slack.mcp)
    ) -> None:
        self._mcp_servers = mcp_servers
        self._service = service
        self._assistants = assistants
        self._channel_settings = channel_settings
        self._feedback = feedback
        self._control = control
        self._images = images
        self._users = users
        self._background = background
        self._subcommands = {
            "help": Subcommand("/assistant help", "this list", self._help),
            "show": Subcommand(
                "/assistant show", "the assistant this channel uses, and what this conversation remembers", self._show
            ),
            "list": Subcommand(
                "/assistant list",
                "the assistants this workspace uses or made (admins: all on the API account)",
                self._list,
            ),
            "use": Subcommand(
                "/assistant use <id or name>", "make this channel use that assistant (admins)", self._use, True
            ),
            "create": Subcommand(
                "/assistant create", "create an assistant in a form; this channel uses it (admins)", self._create
            ),
            "edit": Subcommand("/assistant edit", "edit this channel's assistant in a form (admins)", self._edit),
            "reset": Subcommand(
                "/assistant reset", "this channel goes back to the default assistant (admins)", self._reset
            ),
            "new": Subcommand(
                "/assistant new",
                "this conversation starts afresh, forgetting what came before (kept until forgotten)",
                self._new,
            ),
            "forget": Subcommand(
                "/assistant forget",
                "delete what the API keeps of this conversation (its memory, files and search index) and my records of it (asks first)",
                self._forget,
            ),
            "models": Subcommand("/assistant models", "the models available, fine-tuned ones marked", self._models),
            "usage": Subcommand(
                "/assistant usage", "tokens used by you and in this channel, last 7 and 30 days", self._usage
            ),
            "reply": Subcommand(
                "/assistant reply mention|thread|all",
                "when I answer in this channel: only when mentioned, also in my threads, or to every message (admins)",
                self._reply_mode,
                True,
            ),
            "feedback": Subcommand(
                "/assistant feedback [on|off]",
                "this channel's ratings of my answers, or switch the rating buttons on or off (admins)",
                self._feedback_command,
                argument_optional=True,
            ),
        }
        if mcp is not None:
            self._subcommands["mcp"] = Subcommand(
                "/assistant mcp add|list|remove|enable|disable ...",
                "the workspace's MCP tool servers, and which this channel's assistant uses (admins change them)",
                mcp,
                argument_optional=True,
            )

    def register(self, app: AsyncApp) -> None:
        app.command("/ask")(self.on_ask)
        app.command("/imagine")(self.on_imagine)
        app.command("/assistant")(self.on_assistant)
        app.action(FORGET_CONFIRM)(self.on_forget_confirmed)
        app.action(FORGET_CANCEL)(self.on_forget_cancelled)
        app.view(EDITOR_CALLBACK)(self.on_editor_submitted)

    # Listeners: ack, then start the work ---------------------------------------------------

    async def on_ask(
        self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await ack()
        question = (command.get("text") or "").strip()
        self._start(self._ask(Invocation.of(command, respond, client), question), "ask", respond)

    async def on_imagine(
        self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await ack()
        prompt = (command.get("text") or "").strip()
        self._start(self._imagine(Invocation.of(command, respond, client), prompt), "imagine", respond)

    async def on_assistant(
        self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await ack()
        name, _, argument = (command.get("text") or "").strip().partition(" ")
        subcommand = self._subcommands.get(name.lower() or "help")
        if subcommand is None:
            text = f"I don't know `/assistant {name}`.\n\n{self.help_text()}"
            self._start(self._reply(respond, text), "usage", respond)
            return
        argument = argument.strip()
        if bool(argument) != subcommand.takes_argument and not subcommand.argument_optional:
            text = f"Usage: `{subcommand.usage}` ({subcommand.meaning})."
            self._start(self._reply(respond, text), "usage", respond)
            return
        work = subcommand.handler(Invocation.of(command, respond, client), argument)
        self._start(work, f"assistant-{name.lower()}", respond)

    async def on_forget_confirmed(
        self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        clicked = Interaction.of(body)
        work = self._forget_now(
            clicked.team_id, clicked.channel_id, clicked.user_id, action.get("value") or "", respond
        )
        self._start(work, "forget", respond)

    async def on_forget_cancelled(self, ack: AsyncAck, respond: AsyncRespond) -> None:
        await ack()
        self._start(self._reply(respond, "Nothing was deleted.", replace_original=True), "forget-cancel", respond)

    async def on_editor_submitted(
        self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        submitted = Interaction.of(body)
        spec, errors = _read_editor(
            view,
            offered_tools=self._assistants.builtin_tools(),
            offered_servers=await self._offered_servers(submitted.team_id),
            backend_name=self._assistants.backend_name,
        )
        if errors or spec is None:
            await ack(response_action="errors", errors=errors)
            return
        await ack(response_action="update", view=_notice_view("Saving…", "Saving the assistant…"))
        try:
            target = json.loads(view.get("private_metadata") or "{}")
        except ValueError:
            target = {}
        work = self._save_assistant(
            client, view["id"], team_id=submitted.team_id, user_id=submitted.user_id, target=target, spec=spec
        )
        self._background.start(work, name="assistant-save")

    def _start(self, work: Awaitable[None], name: str, respond: AsyncRespond) -> None:
        self._background.start(self._guarded(work, respond), name=name)

    async def _guarded(self, work: Awaitable[None], respond: AsyncRespond) -> None:
        """Failures become a short ephemeral answer; the log gets the details."""
        try:
            await work
        except ConversationBusy:
            await self._reply(respond, BUSY)
        except APIError as exc:
            log.warning("command failed on the API: %s", exc)
            await self._reply(respond, api_failure_reason(exc))
        except BotError:
            log.exception("command failed")
            await self._reply(respond, "Something went wrong on my side. Please try again in a moment.")

    @staticmethod
    async def _reply(respond: AsyncRespond, text: str, *, replace_original: bool = False) -> None:
        await respond(text=text, response_type="ephemeral", replace_original=replace_original)

    # /ask and /imagine ---------------------------------------------------------------------

    async def _ask(self, invocation: Invocation, question: str) -> None:
        if not question:
            await self._reply(invocation.respond, ASK_USAGE)
            return
        speaker = await self._users.get(invocation.user_id, team_id=invocation.team_id)
        try:
            posted = await invocation.client.chat_postMessage(
                channel=invocation.channel_id,
                text=f"*{notice_mrkdwn(speaker.display_name)} asked:* {notice_mrkdwn(question)}",
            )
        except SlackApiError as exc:
            error = exc.response.get("error")
            log.info("/ask in %s could not be posted: %s", invocation.channel_id, error)
            await self._reply(
                invocation.respond,
                NOT_IN_CHANNEL.format(what="your question")
                if error in CANNOT_POST_ERRORS
                else "I couldn't post your question.",
            )
            return
        ts = posted["ts"]
        await self._service.accept(
            Turn(
                event_id=f"ask:{invocation.trigger_id or ts}",
                team_id=invocation.team_id,
                channel_id=invocation.channel_id,
                thread_key=ts,
                surface=Surface.CHANNEL,
                user_id=invocation.user_id,
                user_name=speaker.display_name,
                text=to_plain_text(question, user_names={}),
                message_ts=ts,
                reply_thread_ts=ts,
                user_timezone=speaker.timezone,
            )
        )

    async def _imagine(self, invocation: Invocation, prompt: str) -> None:
        if not prompt:
            await self._reply(invocation.respond, IMAGINE_USAGE)
            return
        if len(prompt) > MAX_PROMPT_CHARS:
            text = f"That prompt is too long; please keep it under {MAX_PROMPT_CHARS} characters."
            await self._reply(invocation.respond, text)
            return
        refusal = await self._images.refusal(
            prompt, team_id=invocation.team_id, channel_id=invocation.channel_id, user_id=invocation.user_id
        )
        if refusal is not None:
            await self._reply(invocation.respond, refusal)
            return
        await self._reply(invocation.respond, "Making your image…")
        picture = await self._images.generate(prompt)
        speaker = await self._users.get(invocation.user_id, team_id=invocation.team_id)
        try:
            await invocation.client.files_upload_v2(
                channel=invocation.channel_id,
                content=picture.content,
                filename=picture.filename,
                title=prompt[:250],
                initial_comment=f"*{notice_mrkdwn(speaker.display_name)} imagined:* {notice_mrkdwn(prompt)}",
            )
        except SlackApiError as exc:
            error = exc.response.get("error")
            log.info("/imagine in %s could not be uploaded: %s", invocation.channel_id, error)
            await self._reply(
                invocation.respond,
                NOT_IN_CHANNEL.format(what="the image")
                if error in CANNOT_POST_ERRORS
                else "I made the image but couldn't upload it to Slack.",
            )

    # /assistant subcommands ----------------------------------------------------------------

    def help_text(self) -> str:
        lines = ["*`/assistant` commands*"]
        lines += [f"• `{sub.usage}`: {sub.meaning}" for sub in self._subcommands.values()]
        lines += [
            "",
            "Also: `/ask <question>` posts your question here and I answer in its thread; "
            "`/imagine <prompt>` makes an image.",
            CONVERSATION_MEANING,
        ]
        return "\n".join(lines)

    async def _help(self, invocation: Invocation, _: str) -> None:
        await self._reply(invocation.respond, self.help_text())

    async def _show(self, invocation: Invocation, _: str) -> None:
        current = await self._assistants.current(team_id=invocation.team_id, channel_id=invocation.channel_id)
        assistant = current.assistant
        origin = "the default assistant" if current.is_default else "chosen for this channel"
        instructions = (assistant.instructions or "").strip() or "(none)"
        if len(instructions) > INSTRUCTIONS_SUMMARY_CHARS:
            instructions = instructions[:INSTRUCTIONS_SUMMARY_CHARS].rstrip() + "…"
        conversation = await self._this_conversation(invocation)
        if conversation is None:
            memory = "no conversation with me here yet"
        elif conversation.backend_state and conversation.backend == self._assistants.backend_name:
            memory = f"kept by the {conversation.backend} backend"
        else:
            memory = "nothing yet; its next message starts it"
        lines = [
            f"*This channel uses {assistant.name or 'an unnamed assistant'}* (`{assistant.id}`, {origin})",
            f"Model: `{assistant.model}`",
            f"Tools: {', '.join(TOOL_LABELS.get(tool, tool) for tool in assistant.builtin_tools) or 'none'}",
            *([f"MCP: {notice_mrkdwn(', '.join(assistant.mcp_servers))}"] if assistant.mcp_servers else []),
            *([f"Reasoning effort: {assistant.reasoning_effort}"] if assistant.reasoning_effort else []),
            f"Instructions: {instructions}",
            f"This conversation's memory: {memory}",
        ]
        if not invocation.is_dm:
            mode = await self._channel_settings.reply_mode(team_id=invocation.team_id, channel_id=invocation.channel_id)
            lines.append(f"Replies: `{mode.value}` ({REPLY_MODE_MEANINGS[mode]})")
        await self._reply(invocation.respond, "\n".join(lines))

    async def _list(self, invocation: Invocation, _: str) -> None:
        # The channel's assistant first: asking for the default may create it, and then it is listed too.
        current = await self._assistants.current(team_id=invocation.team_id, channel_id=invocation.channel_id)
        available = await self._assistants.available()
        own = await self._assistants.of_workspace(available, team_id=invocation.team_id)
        lines = [f"*Assistants this workspace uses or made ({len(own)})*", *_listed(own, here=current.assistant.id)]
        # Only admins see the rest: other teams' assistants, whose names and purposes are theirs to share.
        own_ids = {assistant.id for assistant in own}
        others = [assistant for assistant in available if assistant.id not in own_ids]
        if others and await self._is_admin(team_id=invocation.team_id, user_id=invocation.user_id):
            lines += [
                "",
                (
                    f"*Others on the API account ({len(others)})*: a channel here can use one once the bot's "
                    "operator adds its id to `ALLOWED_PROFILE_IDS`."
                ),
                *_listed(others, here=current.assistant.id),
            ]
        await self._reply(invocation.respond, "\n".join(lines))

    async def _use(self, invocation: Invocation, reference: str) -> None:
        if not await self._may_change(invocation):
            return
        found = await self._assistants.find(reference)
        if not found:
            text = f"No assistant has the id or name “{reference}”. `/assistant list` shows them."
            await self._reply(invocation.respond, text)
            return
        usable = await self._assistants.of_workspace(found, team_id=invocation.team_id)
        if not usable:
            log.info(
                "user %s may not bind %s to profile %r of another workspace",
                invocation.user_id,
                invocation.channel_id,
                reference,
            )
            await self._reply(invocation.respond, NOT_OF_WORKSPACE.format(reference=reference))
            return
        if len(usable) > 1:
            ids = ", ".join(f"`{assistant.id}`" for assistant in usable)
            await self._reply(invocation.respond, f"Several assistants are named “{reference}” ({ids}); use the id.")
            return
        assistant = usable[0]
        await self._assistants.use(
            team_id=invocation.team_id,
            channel_id=invocation.channel_id,
            user_id=invocation.user_id,
            assistant_id=assistant.id,
        )
        await self._reply(invocation.respond, f"This channel now uses {_describe(assistant)}.")

    async def _create(self, invocation: Invocation, _: str) -> None:
        if await self._may_change(invocation):
            await self._open_editor(invocation, None)

    async def _edit(self, invocation: Invocation, _: str) -> None:
        if await self._may_change(invocation):
            current = await self._assistants.current(team_id=invocation.team_id, channel_id=invocation.channel_id)
            await self._open_editor(invocation, current.assistant)

    async def _reset(self, invocation: Invocation, _: str) -> None:
        if not await self._may_change(invocation):
            return
        await self._assistants.reset(
            team_id=invocation.team_id, channel_id=invocation.channel_id, user_id=invocation.user_id
        )
        default = await self._assistants.default()
        await self._reply(invocation.respond, f"This channel uses the default assistant again: {_describe(default)}.")

    async def _this_conversation(self, invocation: Invocation) -> Conversation | None:
        return await self._control.conversation_for(
            team_id=invocation.team_id, channel_id=invocation.channel_id, is_dm=invocation.is_dm
        )

    async def _existing_conversation(self, invocation: Invocation) -> Conversation | None:
        """This conversation, or None after telling the person there is none or that it is not theirs."""
        conversation = await self._this_conversation(invocation)
        if conversation is None:
            await self._reply(invocation.respond, NO_CONVERSATION)
            return None
        if not await self._may_control(conversation, team_id=invocation.team_id, user_id=invocation.user_id):
            await self._reply(invocation.respond, NOT_YOURS)
            return None
        return conversation

    async def _may_control(self, conversation: Conversation, *, team_id: str, user_id: str) -> bool:
        is_admin = await self._is_admin(team_id=team_id, user_id=user_id)
        allowed = await self._control.may_control(conversation.id, user_id=user_id, is_admin=is_admin)
        if not allowed:
            log.info("user %s may not start afresh or forget conversation %s", user_id, conversation.id)
        return allowed

    async def _new(self, invocation: Invocation, _: str) -> None:
        conversation = await self._existing_conversation(invocation)
        if conversation is None:
            return
        if not await self._control.start_fresh(conversation, since_ts=invocation.sent_ts):
            text = "This conversation has no memory yet; its next message starts a fresh one anyway."
            await self._reply(invocation.respond, text)
            return
        await self._reply(
            invocation.respond,
            "Done: the next message in this conversation starts afresh, without what was said before. "
            "The old memory is kept until the conversation is forgotten.",
        )

    async def _forget(self, invocation: Invocation, _: str) -> None:
        conversation = await self._existing_conversation(invocation)
        if conversation is None:
            return
        question = (
            "Forget this conversation? This deletes what the API keeps of it (its memory, the files uploaded "
            "for it, its search index) and my records of it. The Slack messages stay. This cannot be undone."
        )
        await invocation.respond(
            text=question,
            response_type="ephemeral",
            blocks=[
                {"type": "section", "text": {"type": "mrkdwn", "text": question}},
                {
                    "type": "actions",
                    "block_id": "forget",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": FORGET_CONFIRM,
                            "style": "danger",
                            "text": _plain("Forget it"),
                            "value": str(conversation.id),
                        },
                        {"type": "button", "action_id": FORGET_CANCEL, "text": _plain("Cancel")},
                    ],
                },
            ],
        )

    async def _forget_now(self, team_id: str, channel_id: str, user_id: str, value: str, respond: AsyncRespond) -> None:
        conversation = await self._control.get(int(value)) if value.isdigit() else None
        # The button's value is only trusted for a conversation of the channel it was clicked in.
        if conversation is None or (conversation.team_id, conversation.channel_id) != (team_id, channel_id):
            await self._reply(respond, "That conversation is already forgotten.", replace_original=True)
            return
        # Checked at the click too: the click is what deletes, and it names who clicked.
        if not await self._may_control(conversation, team_id=team_id, user_id=user_id):
            await self._reply(respond, NOT_YOURS, replace_original=True)
            return
        deleted = await self._control.forget(conversation.id)
        await self._reply(
            respond,
            f"Forgotten: deleted {deleted.memories} conversation memor{'y' if deleted.memories == 1 else 'ies'}, "
            "with their files, and my records of the conversation.",
            replace_original=True,
        )

    async def _models(self, invocation: Invocation, _: str) -> None:
        model_ids = await self._assistants.model_ids()
        lines = [f"*Models available ({len(model_ids)})*"]
        for group in group_models(model_ids):
            lines.append(f"*{group.title}*")
            lines += [f"• `{model}`{' (fine-tuned)' if is_fine_tuned(model) else ''}" for model in group.model_ids]
        await self._reply(invocation.respond, "\n".join(lines))

    async def _usage(self, invocation: Invocation, _: str) -> None:
        windows = await self._assistants.usage(
            team_id=invocation.team_id, user_id=invocation.user_id, channel_id=invocation.channel_id
        )
        lines = ["*Tokens used* (prompt + completion)"]
        for window in windows:
            lines.append(
                f"• Last {window.days} days: you {_tokens(window.by_user)}; this channel {_tokens(window.by_channel)}"
            )
        await self._reply(invocation.respond, "\n".join(lines))

    async def _reply_mode(self, invocation: Invocation, argument: str) -> None:
        try:
            mode = ReplyMode(argument.lower())
        except ValueError:
            await self._reply(invocation.respond, "Usage: `/assistant reply mention|thread|all`.")
            return
        if invocation.is_dm:
            await self._reply(invocation.respond, "In a DM I answer every message; reply modes are for channels.")
            return
        if not await self._is_admin(team_id=invocation.team_id, user_id=invocation.user_id):
            log.info("user %s may not change the reply mode of %s", invocation.user_id, invocation.channel_id)
            await self._reply(invocation.respond, REPLY_ADMINS_ONLY)
            return
        await self._channel_settings.set_reply_mode(
            team_id=invocation.team_id, channel_id=invocation.channel_id, user_id=invocation.user_id, mode=mode
        )
        await self._reply(invocation.respond, f"Done: in this channel {REPLY_MODE_MEANINGS[mode]}.")

    async def _feedback_command(self, invocation: Invocation, argument: str) -> None:
        switch = argument.lower()
        if switch not in ("", "on", "off"):
            await self._reply(invocation.respond, "Usage: `/assistant feedback [on|off]`.")
            return
        if not await self._is_admin(team_id=invocation.team_id, user_id=invocation.user_id):
            log.info("user %s may not see or switch the feedback of %s", invocation.user_id, invocation.channel_id)
            await self._reply(invocation.respond, FEEDBACK_ADMINS_ONLY)
            return
        team_id, channel_id = invocation.team_id, invocation.channel_id
        if switch:
            enabled = switch == "on"
            await self._channel_settings.set_feedback_enabled(
                team_id=team_id, channel_id=channel_id, user_id=invocation.user_id, enabled=enabled
            )
            text = (
                "Done: my answers here carry the rating buttons again."
                if enabled
                else "Done: my answers here no longer carry the rating buttons."
            )
            await self._reply(invocation.respond, text)
            return
        enabled = await self._channel_settings.feedback_enabled(team_id=team_id, channel_id=channel_id)
        summaries = await self._feedback.summary(team_id=team_id, channel_id=channel_id, comments=LATEST_COMMENTS)
        lines = [f"*Feedback on my answers here* (buttons {'on' if enabled else 'off'})"]
        if not summaries:
            lines.append("No ratings yet.")
        for summary in summaries:
            lines.append(f"👍 {summary.good}   👎 {summary.bad}")
            if summary.comments:
                lines.append("*Latest comments*")
            lines += [
                f"• <@{comment.user_id}> ({'👍' if comment.value == GOOD else '👎'}): {notice_mrkdwn(comment.comment)}"
                for comment in summary.comments
            ]
        await self._reply(invocation.respond, "\n".join(lines))

    async def is_admin(self, team_id: str, user_id: str) -> bool:
        """For the other listeners whose actions admins may take for anyone (stopping an answer)."""
        return await self._is_admin(team_id=team_id, user_id=user_id)

    async def _is_admin(self, *, team_id: str, user_id: str) -> bool:
        person = await self._users.get(user_id, team_id=team_id)
        return self._assistants.is_admin(user_id=user_id, is_workspace_admin=person.is_admin)

    async def _may_change(self, invocation: Invocation) -> bool:
        allowed = await self._is_admin(team_id=invocation.team_id, user_id=invocation.user_id)
        if not allowed:
            log.info("user %s may not change the assistant of %s", invocation.user_id, invocation.channel_id)
            await self._reply(invocation.respond, REFUSED)
        return allowed

    # The assistant editor modal ------------------------------------------------------------

    async def _offered_servers(self, team_id: str) -> list[str] | None:
        return await self._mcp_servers(team_id) if self._mcp_servers is not None else None

    async def _open_editor(self, invocation: Invocation, assistant: Profile | None) -> None:
        models = assistant_models(await self._assistants.model_ids())
        view = editor_view(
            channel_id=invocation.channel_id,
            models=models,
            assistant=assistant,
            tools=self._assistants.builtin_tools(),
            mcp_servers=await self._offered_servers(invocation.team_id) or [],
            backend_name=self._assistants.backend_name,
        )
        try:
            await invocation.client.views_open(trigger_id=invocation.trigger_id, view=view)
        except SlackApiError as exc:
            log.warning("views.open failed: %s", exc.response.get("error"))
            text = "I couldn't open the form (Slack allows 3 seconds); please try again."
            await self._reply(invocation.respond, text)

    async def _save_assistant(
        self,
        client: AsyncWebClient,
        view_id: str,
        *,
        team_id: str,
        user_id: str,
        target: dict[str, Any],
        spec: ProfileSpec,
    ) -> None:
        channel_id = str(target.get("channel_id") or "")
        assistant_id = target.get("assistant_id")
        if not channel_id or not await self._is_admin(team_id=team_id, user_id=user_id):
            await _show_notice(client, view_id, "Not saved", REFUSED)
            return
        try:
            if assistant_id:
                saved = await self._assistants.edit(
                    team_id=team_id, channel_id=channel_id, user_id=user_id, assistant_id=str(assistant_id), spec=spec
                )
            else:
                saved = await self._assistants.create(
                    team_id=team_id, channel_id=channel_id, user_id=user_id, spec=spec
                )
        except APIError as exc:
            log.warning("saving an assistant failed: %s", exc)
            await _show_notice(client, view_id, "Not saved", _save_failure(exc, spec))
            return
        verb = "Saved" if assistant_id else "Created"
        await _show_notice(client, view_id, "Done", f"{verb} {_describe(saved)}. <#{channel_id}> uses it now.")


def editor_view(
    *,
    channel_id: str,
    models: list[str],
    assistant: Profile | None,
    tools: tuple[str, ...],
    mcp_servers: Sequence[str] = (),
    backend_name: str,
) -> dict[str, Any]:
    """The create/edit modal; private_metadata carries the channel (and the assistant being edited)."""
    shown_models = models[:MAX_SELECT_OPTIONS]
    if assistant is not None and assistant.model and assistant.model not in shown_models:
        shown_models = [assistant.model, *shown_models[: MAX_SELECT_OPTIONS - 1]]
    model_select: dict[str, Any] = {
        "type": "static_select",
        "action_id": "value",
        "placeholder": {"type": "plain_text", "text": "Choose a model"},
        "option_groups": [
            {"label": {"type": "plain_text", "text": title}, "options": [_option(model, model) for model in group]}
            for title, group in (
                ("Fine-tuned", [m for m in shown_models if is_fine_tuned(m)]),
                ("Models", [m for m in shown_models if not is_fine_tuned(m)]),
            )
            if group
        ],
    }
    name_input: dict[str, Any] = {"type": "plain_text_input", "action_id": "value", "max_length": 256}
    tools_input: dict[str, Any] = {
        "type": "checkboxes",
        "action_id": "value",
        "options": [_option(TOOL_LABELS[tool], tool) for tool in tools],
    }
    instructions_input: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": "value",
        "multiline": True,
        "max_length": MAX_INPUT_CHARS,
    }
    effort_select: dict[str, Any] = {
        "type": "static_select",
        "action_id": "value",
        "options": [_option("The model's default", DEFAULT_EFFORT), *(_option(e, e) for e in REASONING_EFFORTS)],
        "initial_option": _option("The model's default", DEFAULT_EFFORT),
    }
    editable_instructions = True
    if assistant is not None:
        if assistant.name:
            name_input["initial_value"] = assistant.name[:256]
        if assistant.model:
            model_select["initial_option"] = _option(assistant.model, assistant.model)
        chosen = [tool for tool in assistant.tools if tool in tools]
        if chosen:
            tools_input["initial_options"] = [_option(TOOL_LABELS[tool], tool) for tool in chosen]
        if assistant.reasoning_effort in REASONING_EFFORTS:
            effort_select["initial_option"] = _option(assistant.reasoning_effort, assistant.reasoning_effort)
        editable_instructions = len(assistant.instructions or "") <= MAX_INPUT_CHARS
        if assistant.instructions and editable_instructions:
            instructions_input["initial_value"] = assistant.instructions
    blocks: list[dict[str, Any]] = [
        {"type": "input", "block_id": "name", "label": _plain("Name"), "element": name_input},
        {"type": "input", "block_id": "model", "label": _plain("Model"), "element": model_select},
    ]
    if editable_instructions:
        blocks.append(
            {
                "type": "input",
                "block_id": "instructions",
                "optional": True,
                "label": _plain("Instructions"),
                "element": instructions_input,
            }
        )
    else:
        blocks.append(_context("The instructions are longer than a Slack form can hold; they stay as they are."))
    if tools:  # Slack refuses checkboxes without options; a backend may run none of the built-in tools
        blocks.append(
            {"type": "input", "block_id": "tools", "optional": True, "label": _plain("Tools"), "element": tools_input}
        )
    missing = [TOOL_LABELS[tool] for tool in BUILTIN_TOOLS if tool not in tools]
    if missing:
        blocks.append(_context(not_available(missing, backend_name)))
    if mcp_servers:
        blocks.append(_mcp_servers_input(mcp_servers, enabled=assistant.mcp_servers if assistant else ()))
    blocks.append(
        {
            "type": "input",
            "block_id": "reasoning_effort",
            "optional": True,
            "label": _plain("Reasoning effort (reasoning models only)"),
            "element": effort_select,
        }
    )
    metadata = {"channel_id": channel_id, "assistant_id": assistant.id if assistant else None}
    return {
        "type": "modal",
        "callback_id": EDITOR_CALLBACK,
        "title": _plain("Edit assistant" if assistant else "New assistant"),
        "submit": _plain("Save" if assistant else "Create"),
        "close": _plain("Cancel"),
        "private_metadata": json.dumps(metadata),
        "blocks": blocks,
    }


def _mcp_servers_input(labels: Sequence[str], *, enabled: Sequence[str]) -> dict[str, Any]:
    """The workspace's MCP servers as switches: checkboxes, or a multi-select past Slack's 10 checkboxes."""
    shown = labels[:MAX_SELECT_OPTIONS]
    kind = "checkboxes" if len(shown) <= MAX_CHECKBOXES else "multi_static_select"
    element: dict[str, Any] = {"type": kind, "action_id": "value", "options": [_option(s, s) for s in shown]}
    chosen = [label for label in shown if label in enabled]
    if chosen:
        element["initial_options"] = [_option(label, label) for label in chosen]
    if kind != "checkboxes":
        element["placeholder"] = _plain("Choose servers")
    return {
        "type": "input",
        "block_id": MCP_SERVERS_BLOCK,
        "optional": True,
        "label": _plain("MCP tool servers"),
        "element": element,
    }


def _read_editor(
    view: dict[str, Any],
    *,
    offered_tools: tuple[str, ...],
    offered_servers: Sequence[str] | None,
    backend_name: str,
) -> tuple[ProfileSpec | None, dict[str, str]]:
    """The submitted form as a spec, or the errors to show next to its fields (a stale or forged
    submission may name tools the backend cannot run)."""
    values = (view.get("state") or {}).get("values") or {}

    def field(block: str) -> dict[str, Any]:
        return (values.get(block) or {}).get("value") or {}

    name = (field("name").get("value") or "").strip()
    model = (field("model").get("selected_option") or {}).get("value") or ""
    tools = tuple(str(option.get("value")) for option in field("tools").get("selected_options") or [])
    servers = (
        tuple(str(option.get("value")) for option in field(MCP_SERVERS_BLOCK).get("selected_options") or [])
        if MCP_SERVERS_BLOCK in values
        else None
    )
    effort = (field("reasoning_effort").get("selected_option") or {}).get("value") or DEFAULT_EFFORT
    instructions = (field("instructions").get("value") or "").strip() if "instructions" in values else None
    spec = ProfileSpec(
        name=name,
        model=model,
        instructions=instructions,
        tools=tools,
        reasoning_effort=None if effort == DEFAULT_EFFORT else effort,
        mcp_servers=servers,
    )
    # The field names of the domain's check are the form's block ids.
    choices = ProfileChoices(
        backend_name=backend_name,
        tools=offered_tools,
        mcp_servers=None if offered_servers is None else tuple(offered_servers),
    )
    errors = spec_problems(spec, choices)
    return (None, errors) if errors else (spec, {})


def _save_failure(error: APIError, spec: ProfileSpec) -> str:
    if isinstance(error, APIStatusError) and error.code == "model_not_found":
        return f"The model `{spec.model}` is not available to this account. Choose another one and try again."
    if isinstance(error, NotFoundError):
        return "That assistant no longer exists on the API account."
    return api_failure_reason(error)


async def _show_notice(client: AsyncWebClient, view_id: str, title: str, text: str) -> None:
    try:
        await client.views_update(view_id=view_id, view=_notice_view(title, text))
    except SlackApiError as exc:
        log.warning("views.update failed: %s", exc.response.get("error"))


def _notice_view(title: str, text: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "title": _plain(title),
        "close": _plain("Close"),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    }


def _describe(assistant: Profile) -> str:
    return f"*{assistant.name or 'Unnamed'}* (`{assistant.id}`, model `{assistant.model}`)"


def _listed(assistants: list[Profile], *, here: str) -> list[str]:
    """One line per assistant (at most MAX_LISTED), the channel's own marked."""
    lines = [
        f"• {_describe(assistant)}{' ← this channel' if assistant.id == here else ''}"
        for assistant in assistants[:MAX_LISTED]
    ]
    if len(assistants) > MAX_LISTED:
        lines.append(f"…and {len(assistants) - MAX_LISTED} more.")
    return lines


def _tokens(usage: TokenUsage) -> str:
    return f"{usage.total:,} ({usage.prompt_tokens:,} + {usage.completion_tokens:,})"


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def _option(label: str, value: str) -> dict[str, Any]:
    return {"text": _plain(label[:75]), "value": value}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}
