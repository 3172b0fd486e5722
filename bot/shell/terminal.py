"""The terminal as the conversation service's platform: answers stream in as Markdown, with a status line."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markdown import Markdown
from rich.spinner import Spinner
from rich.text import Text

from bot.conversations.turn import (
    AnswerFile,
    Citation,
    HistoryMessage,
    PersonalNotice,
    ReasoningNote,
    ReplyCompleted,
    ReplyFailed,
    ReplyPart,
    ReplyStopped,
    ReplyWithdrawn,
    TextDelta,
    ToolActivity,
    ToolStatus,
    Turn,
)
from bot.shell.text import notice_text, printable

THINKING = "Thinking…"
INTERRUPTED = "Something went wrong while I was answering; the answer is tried again when the shell next starts."
TOOL_WORK = {
    "file_search": "Searching the files…",
    "code_interpreter": "Running code…",
    "web_search": "Searching the web…",
    "image_generation": "Making an image…",
}


def tool_status(activity: ToolActivity) -> str:
    if activity.status is ToolStatus.FAILED:
        return f"{activity.name or activity.tool} failed"
    return TOOL_WORK.get(activity.tool) or f"Running {activity.name or activity.tool}…"


def with_footnotes(text: str, citations: tuple[Citation, ...]) -> str:
    lines = [f"[{c.number}] {c.title}{f' ({c.url})' if c.url else ''}" for c in citations]
    return f"{text}\n\n" + "\n".join(lines) if lines else text


class TerminalReply:
    """One answer in the terminal: redrawn in place while it is written (on a terminal), or printed once it
    is done, with each status change on a line of its own (when the output is a file or a pipe)."""

    def __init__(self, console: Console, *, files_dir: Path) -> None:
        self._console = console
        self._files_dir = files_dir
        self._text = ""
        self._status = THINKING
        self._live: Live | None = None
        self._started_ts = f"{time.time():.6f}"
        self.finished = False
        self._abandoned = False

    @property
    def reply_ts(self) -> str | None:
        return self._started_ts

    def open(self) -> None:
        if self._console.is_terminal:
            self._live = Live(self._working(), console=self._console, refresh_per_second=8, transient=True)
            self._live.start()
        else:
            self._show_status()

    async def send(self, part: ReplyPart) -> None:
        if self._abandoned or self.finished:
            return
        if isinstance(part, TextDelta):
            self._text += part.text
            self._status = "Writing…"
            self._redraw()
        elif isinstance(part, ToolActivity):
            self._status = tool_status(part) if part.status is not ToolStatus.COMPLETED else THINKING
            self._show_status()
        elif isinstance(part, ReasoningNote):
            self._status = printable(part.text).strip().splitlines()[0] if part.text.strip() else THINKING
            self._show_status()
        elif isinstance(part, ReplyCompleted):
            text = await self._save_files(part)
            self._finish(Markdown(printable(with_footnotes(text, part.citations)) or "(an empty answer)"))
        elif isinstance(part, ReplyFailed):
            self._finish(self._with_shown(Text(f"⚠ {notice_text(part.reason)}", style="bold red")))
        elif isinstance(part, ReplyStopped):
            self._finish(self._with_shown(Text("(stopped)", style="dim")))
        elif isinstance(part, ReplyWithdrawn):
            self._text = ""
            self._finish(Text(notice_text(part.notice), style="yellow") if part.notice else Text(""))
        elif isinstance(part, PersonalNotice):
            await self.notice(part.text)

    async def notice(self, text: str) -> None:
        self._console.print(Text(notice_text(text), style="yellow"))

    def abandon(self) -> None:
        self._abandoned = True
        self._stop_live()

    def close(self) -> None:
        if not self.finished and not self._abandoned:
            self._finish(self._with_shown(Text(INTERRUPTED, style="bold red")))
        self._stop_live()

    def _working(self) -> RenderableType:
        spinner = Spinner("dots", text=Text(self._status, style="dim"))
        return Group(Markdown(printable(self._text)), spinner) if self._text else spinner

    def _redraw(self) -> None:
        if self._live is not None:
            self._live.update(self._working())

    def _show_status(self) -> None:
        if self._live is not None:
            self._live.update(self._working())
        else:
            self._console.print(Text(f"… {self._status}", style="dim"))

    def _with_shown(self, ending: Text) -> RenderableType:
        return Group(Markdown(printable(self._text)), ending) if self._text else ending

    def _finish(self, shown: RenderableType) -> None:
        self.finished = True
        self._stop_live()
        self._console.print(shown)

    def _stop_live(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    async def _save_files(self, answer: ReplyCompleted) -> str:
        """Save the files the assistant made into the shell's folder; the answer's links point at them."""
        text = answer.text
        for file in answer.files:
            try:
                saved = await asyncio.to_thread(_save, self._files_dir, file)
            except OSError as exc:
                await self.notice(f"⚠ I couldn't save {file.name}, a file the assistant made ({exc.strerror}).")
                continue
            await self.notice(f"Saved {saved.name}, a file the assistant made, to {saved}")
            if file.link:
                text = text.replace(file.link, str(saved))
        for withheld in answer.withheld:
            await self.notice(f"⚠ I couldn't bring over {withheld.name}, a file the assistant made: {withheld.reason}.")
        return text


def _save(folder: Path, file: AnswerFile) -> Path:
    """Write the file under a name of its own in the folder: never a path the name steers elsewhere."""
    name = printable(Path(file.name).name).strip() or "file"
    if name in (".", ".."):
        name = "file"
    folder.mkdir(parents=True, exist_ok=True)
    stem, suffix = Path(name).stem, Path(name).suffix
    target, number = folder / name, 1
    while True:
        try:
            with target.open("xb") as written:  # never over a file that is there
                written.write(file.data)
            return target
        except FileExistsError:
            number += 1
            target = folder / f"{stem}-{number}{suffix}"


class TerminalPlatform:
    """The conversation service's view of the terminal: no earlier messages to read, answers printed."""

    def __init__(self, console: Console, *, files_dir: Path) -> None:
        self._console = console
        self._files_dir = files_dir

    async def history(self, turn: Turn, *, since_ts: str | None = None) -> list[HistoryMessage]:
        return []  # the conversation's memory is the backend's; the terminal keeps nothing itself

    async def prepare(self, turn: Turn) -> Turn:
        return turn  # typed text, by the one person at the terminal

    @asynccontextmanager
    async def reply(
        self, turn: Turn, *, resume_ts: str | None = None, unrecorded_after: str | None = None
    ) -> AsyncIterator[TerminalReply]:
        stream = TerminalReply(self._console, files_dir=self._files_dir)
        stream.open()
        try:
            yield stream
        finally:
            stream.close()
