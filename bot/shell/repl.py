"""The shell's loop: read a line, answer it through the conversation service, show the answer as it comes."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import importlib
import logging
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.text import Text

from bot.app import channel_assistants, open_core, start_service
from bot.conversations.channels import DM_THREAD_KEY, ConversationControl
from bot.conversations.service import ConversationService, api_failure_reason
from bot.conversations.turn import SharedFile, Surface, Turn
from bot.errors import APIError, ConversationBusy, FileRefused
from bot.settings import Settings
from bot.shell.commands import SHELL_CHANNEL, SHELL_TEAM, SHELL_USER, ShellCommands, describe
from bot.shell.files import LocalFiles
from bot.shell.terminal import TerminalPlatform
from bot.shell.text import printable
from bot.store.channels import ChannelStore

log = logging.getLogger(__name__)

PROMPT = "you> "
ANSWER_PROMPT = "> "  # for the answer to a command's question
BUSY = "The assistant is still answering in this conversation (perhaps a shell elsewhere); try again soon."


class LineReader:
    """Lines from the terminal, read on a daemon thread so that the loop keeps running meanwhile, and so
    that a read waiting at exit (Ctrl-C) does not keep the process alive."""

    def __init__(self, source: TextIO) -> None:
        self._source = source
        self._interactive = source.isatty()
        if self._interactive:
            with contextlib.suppress(ImportError):  # line editing and history for input(), where the OS has it
                importlib.import_module("readline")

    async def read(self, prompt: str = PROMPT) -> str | None:
        """The next line without its newline; None at the end of input (Ctrl-D)."""
        loop = asyncio.get_running_loop()
        line: asyncio.Future[str | None] = loop.create_future()

        def read() -> None:
            try:
                text: str | None = input(prompt) if self._interactive else self._source.readline() or None
            except EOFError:
                text = None
            except BaseException as exc:  # reported to the loop, which is where it can be handled
                loop.call_soon_threadsafe(_fail, line, exc)
                return
            loop.call_soon_threadsafe(_settle, line, text)

        threading.Thread(target=read, name="shell-input", daemon=True).start()
        text = await line
        return None if text is None else text.rstrip("\r\n")


def _settle(future: asyncio.Future[str | None], text: str | None) -> None:
    if not future.done():
        future.set_result(text)


def _fail(future: asyncio.Future[str | None], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


class Shell:
    """One person talking to the assistant in a terminal, in the one conversation the shell keeps."""

    def __init__(
        self,
        *,
        service: ConversationService,
        commands: ShellCommands,
        files: LocalFiles,
        console: Console,
        reader: LineReader,
    ) -> None:
        self._service = service
        self._commands = commands
        self._files = files
        self._console = console
        self._reader = reader
        self._pending: list[SharedFile] = []
        self._user_name = _login_name()
        self._last_ts = 0.0

    async def loop(self) -> None:
        while (line := await self._reader.read()) is not None:
            text = line.strip()
            if text in ("/quit", "/exit"):
                return
            if text:
                await self.handle(text)

    async def handle(self, text: str) -> None:
        try:
            if text.startswith("/"):
                await self._command(text)
            else:
                await self._ask(text)
        except ConversationBusy:
            self.say(BUSY)
        except APIError as exc:
            log.warning("shell command failed on the API: %s", exc)
            self.say(api_failure_reason(exc))

    async def _command(self, text: str) -> None:
        name, _, argument = text.partition(" ")
        name = name.lower()
        if name == "/help":
            self.say(self._commands.help_text())
        elif name in ("/file", "/image"):
            await self._share(argument.strip(), image=name == "/image")
        elif name == "/assistant":
            self.say(await self._commands.run(argument, terminal=self))
        else:
            self.say(f"I don't know {printable(name)}; /help lists the commands.")

    async def _share(self, argument: str, *, image: bool) -> None:
        path, message = split_path(argument)
        try:
            file = self._files.attach(path, image=image)
        except FileRefused as exc:
            self.say(f"⚠ I couldn't use that file: {exc}.")
            return
        self._pending.append(file)
        if message:
            await self._ask(message)
        else:
            self.say(f"{file.name} goes with your next message.")

    async def _ask(self, text: str) -> None:
        files, self._pending = tuple(self._pending), []
        ts = self._next_ts()
        await self._service.accept(
            Turn(
                event_id=f"shell:{uuid.uuid4().hex}",
                team_id=SHELL_TEAM,
                channel_id=SHELL_CHANNEL,
                thread_key=DM_THREAD_KEY,
                surface=Surface.DM,
                user_id=SHELL_USER,
                user_name=self._user_name,
                text=text,
                message_ts=ts,
                reply_thread_ts=None,
                user_timezone=os.environ.get("TZ") or None,
                files=files,
            )
        )
        await self._service.idle()

    def _next_ts(self) -> str:
        """A message ts as Slack's are: seconds with microseconds, increasing within the conversation."""
        self._last_ts = max(time.time(), self._last_ts + 0.000001)
        return f"{self._last_ts:.6f}"

    async def ask(self, question: str) -> str | None:
        """The answer to a command's question (a form's field, a confirmation); None at the end of input."""
        self.say(question)
        return await self._reader.read(ANSWER_PROMPT)

    def say(self, text: str) -> None:
        self._console.print(Text(printable(text)))


def _login_name() -> str:
    """Who is at the terminal, for the assistant's records; a container's user may have no name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "you"


def split_path(argument: str) -> tuple[str, str]:
    """The path at the start of `/file` and `/image` arguments (quoted when it has spaces), and the message."""
    if argument[:1] in ("'", '"'):
        quote = argument[0]
        end = argument.find(quote, 1)
        if end > 0:
            return argument[1:end], argument[end + 1 :].strip()
    path, _, message = argument.partition(" ")
    return path, message.strip()


async def run_shell(settings: Settings, *, new: bool, files_dir: Path, source: TextIO = sys.stdin) -> None:
    """`python -m bot shell`: the assistant in this terminal, through the conversation service as in Slack."""
    console = Console(highlight=False)
    async with contextlib.AsyncExitStack() as stack:
        core = await open_core(settings, stack)
        files = LocalFiles(max_mb=settings.max_file_mb)
        service = start_service(
            settings, core, stack, platform=TerminalPlatform(console, files_dir=files_dir), files=files
        )
        # No grace: the shell waits for each answer, so one still running was interrupted (Ctrl-C), and is
        # finished at the next start.
        stack.push_async_callback(service.shutdown, 0.0)
        assistants = channel_assistants(settings, core)
        commands = ShellCommands(
            assistants=assistants,
            control=ConversationControl(backend=core.backend, store=core.store, channel_store=ChannelStore(core.store)),
        )
        current = await assistants.current(team_id=SHELL_TEAM, channel_id=SHELL_CHANNEL)
        console.print(
            Text(
                f"Talking to {printable(describe(current.assistant))} on the {core.backend.name} backend. "
                "/help lists the commands; Ctrl-D leaves.",
                style="bold",
            )
        )
        if new:
            console.print(Text(await commands.new()))
        elif (conversation := await commands.conversation()) is not None and conversation.backend_state:
            console.print(Text("Carrying on with the conversation from last time (--new starts afresh).", style="dim"))
        # Answers left unfinished by an earlier shell (closed mid-answer) are finished first.
        if conversation_id := await _conversation_id(service):
            service.schedule(conversation_id)
            await service.idle()
        await Shell(service=service, commands=commands, files=files, console=console, reader=LineReader(source)).loop()


async def _conversation_id(service: ConversationService) -> int | None:
    conversation = await service.find_conversation(
        team_id=SHELL_TEAM, channel_id=SHELL_CHANNEL, thread_key=DM_THREAD_KEY
    )
    return conversation.id if conversation is not None else None
