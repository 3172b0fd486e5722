"""Turn the assistant's GitHub Markdown into Slack mrkdwn messages that fit Slack's size limit."""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any
from urllib.parse import urlsplit

from markdown_to_mrkdwn import SlackMarkdownConverter
from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ContextActionsBlock,
    FeedbackButtonObject,
    FeedbackButtonsElement,
    SectionBlock,
)

from bot.conversations.turn import Citation

__all__ = [
    "FEEDBACK_ACTION",
    "MIN_LIMIT",
    "STOPPED_NOTE",
    "STOP_ACTION",
    "feedback_block",
    "footnotes",
    "markdown_to_mrkdwn",
    "message_blocks",
    "notice_mrkdwn",
    "render_reply",
    "split_message",
    "stop_button",
]

# Markdown -> mrkdwn
#
# The library converts headings, emphasis, lists, tables, rules and strikethrough line by line
# with regexes. Around it we handle what it gets wrong: code (it rewrites `*` inside spans and
# misses indented or unclosed fences), links with parentheses in the URL, Slack's escaping of
# & < >, blockquotes, and `*`, `**`, `__`, `~~` that cannot pair up (arithmetic, snake__case,
# a half-streamed `**bol`), which it would otherwise pair with the wrong partner.

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}(?=[^`]*$)|~{3,})")
_FENCE_CLOSE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*$")
# All the > of nested quotes at once: Slack cannot nest quotes, and one level keeps this flat.
_QUOTE_MARKER = re.compile(r"^(?:[ \t]{0,3}>)+[ \t]?")
_HEADING = re.compile(r"^[ \t]{0,3}(?P<level>#{1,6})[ \t]+(?P<title>.*?)(?:[ \t]+#+)?[ \t]*$")
_STRONG_MARKER = re.compile(r"\*\*|__")
_TABLE_DELIMITER_ROW = re.compile(r"^\|[-:| ]+\|\s*$")
_LIST_MARKER = re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+(?:\[[ xX]\][ \t]+)?")
_THEMATIC_BREAK = re.compile(r"^[ \t]*(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,})$")
_DELIMITER_RUN = re.compile(r"\*+|_+|~+")
# Runs the library pairs up; single `_` and `~` already mean italic and strikethrough in Slack.
_PAIRED_DELIMITERS = frozenset({"*", "**", "__", "~~"})
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# Characters that would end a Slack <url|label> entity early, or split it at a space.
_URL_ENTITY_BREAKERS = str.maketrans({"|": "%7C", "<": "%3C", ">": "%3E", " ": "%20"})

# Private-use characters: no Markdown pattern matches them, so finished fragments hide behind them.
_HOLD_START = "\ue000"
_HOLD_END = "\ue001"
_HELD = re.compile(f"{_HOLD_START}(\\d+){_HOLD_END}")

# Spans that must reach Slack exactly as rendered here, leftmost first. Task-list markers are
# left for the library; every other `[` is held, so its link pattern (which mangles URLs with
# parentheses, and scans to the end of the line for each `[`) never runs.
_INLINE_LITERAL = re.compile(
    r"""
    (?P<task_marker>(?<![^\n])[ \t]*[-*+][ \t]+\[[ xX]\][ \t])
  | (?P<hold_char>[\ue000\ue001])
  | \\(?P<escaped>[!-/:-@\[-`{-~])
  | (?<!`)(?P<ticks>`+)(?!`)(?P<code>.+?)(?<!`)(?P=ticks)(?!`)
  | <(?P<autolink>[A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]*)>
  | <(?P<email>[A-Za-z0-9.!\#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>
  | !?\[(?P<label>(?:[^\[\]\n]|\[[^\[\]\n]*\])*)\]
      \(\s*(?:<(?P<angle_url>[^<>\n]*)>|(?P<url>(?:[^\s()]|\([^\s()]*\))*))
      (?:\s+(?:"[^"\n]*"|'[^'\n]*'|\([^()\n]*\)))?\s*\)
  | (?P<bracket>\[)
  | (?P<bare_url>https?://(?:[^\s<>()\[\]]|\([^\s<>()]*\))*(?:[^\s<>()\[\].,;:!?'"*_~]|\([^\s<>()]*\)))
    """,
    re.VERBOSE,
)


def markdown_to_mrkdwn(markdown: str) -> str:
    """Slack mrkdwn for GitHub Markdown, which may be cut off anywhere while it streams."""
    return _convert_blocks(markdown.replace("\r\n", "\n").replace("\r", "\n"))


def _convert_blocks(markdown: str) -> str:
    """Fenced code, blockquotes and paragraphs, one blank line kept between blocks that had one."""
    lines = markdown.split("\n")
    output: list[str] = []
    blank_before = False
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.strip():
            blank_before = True
            index += 1
            continue
        if fence := _FENCE_OPEN.match(line):
            index, block = _take_code_block(lines, index + 1, fence)
        elif _QUOTE_MARKER.match(line):
            end = index
            while end < len(lines) and _QUOTE_MARKER.match(lines[end]):
                end += 1
            inner = "\n".join(_QUOTE_MARKER.sub("", quoted, count=1) for quoted in lines[index:end])
            index, block = end, _quote(_convert_blocks(inner))
        else:
            end = index
            while end < len(lines) and _is_paragraph_line(lines[end]):
                end += 1
            index, block = end, _convert_paragraph("\n".join(lines[index:end]))
        if block:
            if output:
                output.append("\n\n" if blank_before else "\n")
            output.append(block)
        blank_before = False
    return "".join(output)


def _is_paragraph_line(line: str) -> bool:
    return bool(line.strip()) and not _FENCE_OPEN.match(line) and not _QUOTE_MARKER.match(line)


def _take_code_block(lines: list[str], index: int, fence: re.Match[str]) -> tuple[int, str]:
    """Read a fenced block up to its closing fence, or to the end while the answer still streams."""
    marker = fence["fence"]
    indent = len(fence["indent"])
    code: list[str] = []
    while index < len(lines):
        closing = _FENCE_CLOSE.match(lines[index])
        if closing and closing["fence"][0] == marker[0] and len(closing["fence"]) >= len(marker):
            index += 1
            break
        line = lines[index]
        # A fence indented inside a list item indents its code by as much; that is not the code's.
        code.append(line[min(indent, len(line) - len(line.lstrip())) :])
        index += 1
    # Slack shows a language tag as a line of code, so the info string is dropped.
    text = "\n".join(code).strip("\n")
    return index, f"```\n{_escape(text)}\n```" if text.strip() else ""


def _quote(mrkdwn: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in mrkdwn.split("\n"))


class _Held:
    """Finished mrkdwn fragments, each standing in the text as a token the library leaves alone."""

    def __init__(self) -> None:
        self._fragments: list[str] = []

    def hold(self, fragment: str) -> str:
        self._fragments.append(fragment)
        return f"{_HOLD_START}{len(self._fragments) - 1}{_HOLD_END}"

    def restore(self, text: str) -> str:
        return _HELD.sub(lambda match: self._fragments[int(match[1])], text)


def _convert_paragraph(paragraph: str) -> str:
    held = _Held()
    return held.restore(_convert_inline(paragraph, held))


def _convert_inline(text: str, held: _Held) -> str:
    """Text with literals held back, converted by the library; held tokens are left in it."""
    text = _INLINE_LITERAL.sub(
        lambda match: match[0] if match["task_marker"] else held.hold(_render_literal(match, held)), text
    )
    lines = text.split("\n")
    prepared = []
    for index, line in enumerate(lines):
        if heading := _HEADING.match(line):
            # The library makes the whole heading bold; bold inside it would end that bold early.
            line = f"{heading['level']} {_STRONG_MARKER.sub('', heading['title'])}"
        elif index + 1 < len(lines) and line.startswith("|") and _TABLE_DELIMITER_ROW.match(lines[index + 1]):
            # The library makes header cells bold without converting them: same problem.
            line = _STRONG_MARKER.sub("", line)
        prepared.append(_hold_unpaired_delimiters(line, held))
    # A converter per call: it keeps state while converting, and replies render concurrently.
    converted: str = SlackMarkdownConverter().convert(_escape("\n".join(prepared)))
    return converted


def _render_literal(match: re.Match[str], held: _Held) -> str:
    if match["hold_char"] is not None:
        return match["hold_char"]
    if match["escaped"] is not None:
        return _escape(match["escaped"])
    if match["code"] is not None:
        return _code_span(match["ticks"], match["code"])
    if match["autolink"] is not None:
        return f"<{_slack_url(match['autolink'])}>"
    if match["email"] is not None:
        return f"<mailto:{_slack_url(match['email'])}|{_escape(match['email'])}>"
    if match["bracket"] is not None:
        return "["
    if match["bare_url"] is not None:
        return _escape(match["bare_url"])
    url = match["angle_url"] if match["angle_url"] is not None else match["url"]
    label = held.restore(_convert_inline(match["label"], held)) if match["label"].strip() else ""
    return _link(url, label)


def _code_span(ticks: str, code: str) -> str:
    # CommonMark drops one space on each side, which lets a span start or end with a backtick.
    if code.startswith(" ") and code.endswith(" ") and code.strip():
        code = code[1:-1]
    if "`" in code:
        # Slack has no double-backtick spans; keep the original so nothing is lost.
        return _escape(f"{ticks}{code}{ticks}")
    return f"`{_escape(code)}`"


def _link(url: str, label: str) -> str:
    if not _URL_SCHEME.match(url):
        if not url.startswith("www."):
            # Relative links and #anchors lead nowhere from Slack (and <#...> means a channel).
            return label or _escape(url)
        url = f"http://{url}"
    target = _slack_url(url)
    return f"<{target}|{label}>" if label else f"<{target}>"


def _slack_url(url: str) -> str:
    return _escape(url.strip().translate(_URL_ENTITY_BREAKERS))


def _escape(text: str) -> str:
    """Slack's escaping: only these three characters, so that Slack shows them as they are."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _hold_unpaired_delimiters(line: str, held: _Held) -> str:
    """Hold back emphasis markers that CommonMark would not pair, so the library cannot pair them.

    This pairs runs the way CommonMark's delimiter stack does, in a simplified form: a run closes
    the nearest open run of the same kind, and the left/right-flanking rules decide which runs
    may open or close. Lines with `***` runs are left to the library's own bold-italic handling.
    """
    if _THEMATIC_BREAK.match(line):
        return line
    marker = _LIST_MARKER.match(line)
    body_start = marker.end() if marker else 0
    runs = list(_DELIMITER_RUN.finditer(line, body_start))
    star_triples = any(run[0].startswith("***") for run in runs)
    runs = [run for run in runs if run[0] in _PAIRED_DELIMITERS and not (star_triples and run[0][0] == "*")]
    open_runs: dict[str, list[int]] = {}
    unpaired: set[int] = set()
    for index, run in enumerate(runs):
        before = line[run.start() - 1] if run.start() > body_start else " "
        after = line[run.end()] if run.end() < len(line) else " "
        can_open, can_close = _flanking(run[0][0], before, after)
        openers = open_runs.setdefault(run[0], [])
        if can_close and openers:
            openers.pop()
        elif can_open:
            openers.append(index)
        else:
            unpaired.add(index)
    for openers in open_runs.values():
        unpaired.update(openers)
    pieces = []
    position = 0
    for index in sorted(unpaired):
        run = runs[index]
        pieces += [line[position : run.start()], held.hold(run[0])]
        position = run.end()
    pieces.append(line[position:])
    return "".join(pieces)


def _flanking(delimiter: str, before: str, after: str) -> tuple[bool, bool]:
    """(can open, can close) for a delimiter run between the characters before and after it."""
    left = not after.isspace() and (not _is_punctuation(after) or before.isspace() or _is_punctuation(before))
    right = not before.isspace() and (not _is_punctuation(before) or after.isspace() or _is_punctuation(after))
    if delimiter == "_":
        # Underscores never emphasise inside a word: snake__case__name stays as it is.
        return left and (not right or _is_punctuation(before)), right and (not left or _is_punctuation(after))
    return left, right


def _is_punctuation(character: str) -> bool:
    return unicodedata.category(character)[0] in "PS"


# Splitting mrkdwn into messages

MIN_LIMIT = 16  # room for a reopened fence, a closing fence and a few characters between them

_FENCE = "```"
_REOPEN_CODE = f"{_FENCE}\n"
_CLOSE_CODE = f"\n{_FENCE}"
_FENCE_TOKEN = re.compile(_FENCE)
# An unclosed `<` reaches to the end of its line, so an entity still being streamed counts too.
_SLACK_ENTITY = re.compile(r"<[^<>\n]*>?|&(?:amp|lt|gt);")
_WHITESPACE_RUN = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*$")
_SENTENCE_TAIL = 4  # longest text _SENTENCE_END can match: a stop and three closing marks


class _Boundary(IntEnum):
    """How natural a place to split is; higher is better."""

    SPACE = 1
    SENTENCE = 2
    NEWLINE = 3
    PARAGRAPH = 4


@dataclass(frozen=True, slots=True)
class _Gap:
    """A run of whitespace starting at `start`: a chunk may end there, the next begins after it."""

    start: int
    boundary: _Boundary


def split_message(text: str, *, limit: int) -> list[str]:
    """Split mrkdwn into messages of at most `limit` characters, at the best boundary in reach.

    Each chunk is chosen looking only at the text from its start to `limit` characters ahead
    (plus the whitespace that follows), so appending text never changes the chunks before the
    last one unless the appended text falls into that window.
    """
    if limit < MIN_LIMIT:
        raise ValueError(f"limit must be at least {MIN_LIMIT}, got {limit}")
    return _Splitter(text, limit).chunks()


def footnotes(citations: Sequence[Citation]) -> str:
    """The numbered sources under an answer, as Markdown (web sources as links with their titles).

    Titles come from files and web pages, so they are shown as plain text: never a mention, a broadcast or
    formatting, and never ending the link early. A web source's link shows its title (its site's name when it
    has none), never the raw URL; a URL that is not http(s) gets no link.
    """
    if not citations:
        return ""
    lines = []
    for citation in citations:
        url = citation.url if citation.url and _WEB_URL.match(citation.url) else None
        title = " ".join(citation.title.split())[:MAX_SOURCE_TITLE_CHARS] or (urlsplit(url).hostname if url else None)
        label = _plain_markdown(title or "a source")
        lines.append(
            f"[{citation.number}] [{label}](<{_url_in_angles(url)}>)" if url else f"[{citation.number}] {label}"
        )
    return "\n\n" + "\n".join(lines)


_WEB_URL = re.compile(r"^https?://\S", re.IGNORECASE)
MAX_SOURCE_TITLE_CHARS = 200
# Markdown's punctuation that could format, link or end a link label; each is shown as itself (brackets as
# parentheses: the link label's pattern takes no escaped bracket) and `|` as `-`, which no Slack link reads.
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_~<>#!])")


def _plain_markdown(text: str) -> str:
    text = text.replace("[", "(").replace("]", ")").replace("|", "-")
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


def _url_in_angles(url: str) -> str:
    """The URL inside Markdown's <...> link form, which takes any character but these (and one line)."""
    return re.sub(r"\s", "%20", url.strip()).replace("<", "%3C").replace(">", "%3E")


def render_reply(markdown: str, *, limit: int) -> list[str]:
    """The Slack messages that show an assistant's (possibly still streaming) Markdown answer."""
    return split_message(markdown_to_mrkdwn(markdown), limit=limit)


def notice_mrkdwn(notice: str) -> str:
    """A notice (the bot's words around names and text people chose) as mrkdwn that shows it as written.

    Notices carry no Slack entities of their own, only emphasis and emoji codes, so escaping the whole
    text is safe; it is the one place where a file named `notes <!channel>.exe`, or a transcript
    saying "<@U123>", is kept from becoming a broadcast, a mention or a link.
    """
    return _escape(notice)


# Blocks around an answer

STOP_ACTION = "stop_answer"
FEEDBACK_ACTION = "answer_feedback"
STOPPED_NOTE = "_Stopped._"
# Slack's limit on a section block's text; a message's text is laid out in as many sections as it needs.
SECTION_CHARS = 3000


def message_blocks(mrkdwn: str, *, extra: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Blocks that show a message's mrkdwn as its text would show it, followed by `extra` blocks (buttons).

    A message whose blocks are given shows them instead of its text, so the text goes into sections; and an
    update that leaves blocks out keeps the old ones (a streamed message's, a Stop button), so every update
    says its blocks.
    """
    sections = [
        SectionBlock(text={"type": "mrkdwn", "text": piece}).to_dict()
        for piece in split_message(mrkdwn, limit=SECTION_CHARS)
    ]
    return [*sections, *extra]


def stop_button(thread_key: str) -> dict[str, Any]:
    """The Stop button under an answer in progress; its value names the conversation to stop."""
    button = ButtonElement(text="Stop", action_id=STOP_ACTION, value=thread_key)
    return ActionsBlock(block_id="stop", elements=[button]).to_dict()


def feedback_block(answer_ts: str) -> dict[str, Any]:
    """Slack's thumbs up and down under a finished answer, named after the answer's first message."""
    buttons = FeedbackButtonsElement(
        action_id=FEEDBACK_ACTION,
        positive_button=FeedbackButtonObject(
            text="Good answer", accessibility_label="This answer helped", value="good"
        ),
        negative_button=FeedbackButtonObject(
            text="Bad answer", accessibility_label="This answer did not help", value="bad"
        ),
    )
    return ContextActionsBlock(block_id=f"feedback:{answer_ts}", elements=[buttons]).to_dict()


class _Splitter:
    def __init__(self, text: str, limit: int) -> None:
        self._text = text
        self._limit = limit
        self._content_end = len(text.rstrip())
        tokens = list(_FENCE_TOKEN.finditer(text))
        self._fence_ends = [token.end() for token in tokens]
        # Cutting inside a fence would unbalance the code blocks; inside an entity would break it.
        self._inside_fence = bytearray(len(text) + 1)
        self._inside_entity = bytearray(len(text) + 1)
        for token in tokens:
            self._inside_fence[token.start() + 1 : token.end()] = b"\1" * (len(_FENCE) - 1)
        for entity in _SLACK_ENTITY.finditer(text):
            self._inside_entity[entity.start() + 1 : entity.end()] = b"\1" * (len(entity[0]) - 1)
        self._gaps = [self._gap(run) for run in _WHITESPACE_RUN.finditer(text) if run.start() > 0]
        self._gap_starts = [gap.start for gap in self._gaps]

    def _gap(self, run: re.Match[str]) -> _Gap:
        newlines = run[0].count("\n")
        if newlines >= 2:
            boundary = _Boundary.PARAGRAPH
        elif newlines:
            boundary = _Boundary.NEWLINE
        elif _SENTENCE_END.search(self._text, max(0, run.start() - _SENTENCE_TAIL), run.start()):
            boundary = _Boundary.SENTENCE
        else:
            boundary = _Boundary.SPACE
        return _Gap(run.start(), boundary)

    def chunks(self) -> list[str]:
        chunks: list[str] = []
        start = self._resume(0, in_code=False)
        in_code = False
        while start < self._content_end:
            reopen = _REOPEN_CODE if in_code else ""
            budget = self._limit - len(reopen)
            if self._size(start, self._content_end) <= budget:
                chunks.append(reopen + self._body(start, self._content_end))
                break
            cut = self._best_gap(start, budget)
            if cut is None:
                cut = self._hard_cut(start, budget)
            chunks.append(reopen + self._body(start, cut))
            in_code = self._in_code(cut)
            start = self._resume(cut, in_code)
        return chunks

    def _in_code(self, position: int) -> bool:
        return bisect.bisect_right(self._fence_ends, position) % 2 == 1

    def _size(self, start: int, cut: int) -> int:
        """Length of the chunk body text[start:cut], closed with a fence if it ends inside code."""
        return cut - start + (len(_CLOSE_CODE) if self._in_code(cut) else 0)

    def _body(self, start: int, cut: int) -> str:
        body = self._text[start:cut].rstrip()
        return body + _CLOSE_CODE if self._in_code(cut) else body

    def _opens_code_at(self, cut: int) -> bool:
        """Whether text[:cut] ends with an opening fence, which would leave an empty code block."""
        index = bisect.bisect_left(self._fence_ends, cut)
        return index < len(self._fence_ends) and self._fence_ends[index] == cut and self._in_code(cut)

    def _best_gap(self, start: int, budget: int) -> int | None:
        """The best gap in reach: one that fills a third of the message and keeps code blocks whole,
        then the strongest boundary, then the latest."""
        first = bisect.bisect_right(self._gap_starts, start)
        last = bisect.bisect_right(self._gap_starts, start + budget)
        usable = [
            gap
            for gap in self._gaps[first:last]
            if self._size(start, gap.start) <= budget
            and not self._inside_entity[gap.start]
            and not self._opens_code_at(gap.start)
        ]
        if not usable:
            return None
        # Without a minimum fill, a paragraph break near the start would beat a full message.
        third = budget // 3
        best = max(
            usable,
            key=lambda gap: (gap.start - start >= third, not self._in_code(gap.start), gap.boundary, gap.start),
        )
        return best.start

    def _hard_cut(self, start: int, budget: int) -> int:
        """The latest cut that fits and breaks no fence, sparing entities and empty code blocks."""
        candidates = range(min(start + budget, len(self._text)), start, -1)
        for cut in candidates:
            if (
                not self._inside_fence[cut]
                and not self._inside_entity[cut]
                and not self._opens_code_at(cut)
                and self._size(start, cut) <= budget
            ):
                return cut
        # An entity longer than a message has to be cut. MIN_LIMIT guarantees this finds a cut:
        # start is never inside a fence, so start + 1 or the end of a fence at start fits.
        return next(cut for cut in candidates if not self._inside_fence[cut] and self._size(start, cut) <= budget)

    def _resume(self, cut: int, in_code: bool) -> int:
        """Where the next chunk starts: after the whitespace, but keeping a code line's indent."""
        run = _WHITESPACE_RUN.match(self._text, cut)
        if run is None:
            return cut
        if in_code and run.end() < len(self._text):
            line_start = self._text.rfind("\n", cut, run.end()) + 1
            # An indent of half a message or more would leave no room for the code after it.
            if line_start and run.end() - line_start < self._limit // 2:
                return line_start
        return run.end()
