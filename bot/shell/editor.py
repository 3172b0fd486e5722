"""`/assistant create` and `edit` in the shell: Slack's assistant form, asked one field at a time.

The fields are the Slack form's, checked by the same domain rule (`spec_problems`); a field with a problem is
asked again, with what was typed as its default. The shell has no MCP servers (`/assistant mcp` is Slack's),
so the form offers none and an edit keeps those the assistant enables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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

DEFAULT_EFFORT = "default"  # typed for no reasoning effort of the assistant's own (ASSISTANT_REASONING_EFFORT)
NONE = ("none", "-")  # typed to clear the instructions or the tools
LINE_BREAK = "\\n"  # typed in the instructions for a line break: the terminal gives one line per answer
SHOWN_MODELS = 12
SHOWN_INSTRUCTIONS = 60


class Terminal(Protocol):
    """The person at the terminal: asked a question (None at the end of input), or told something."""

    async def ask(self, question: str) -> str | None: ...

    def say(self, text: str) -> None: ...


@dataclass
class FormValues:
    """The form as filled in so far: an assistant's values on edit, what was typed since."""

    name: str
    model: str
    instructions: str
    tools: tuple[str, ...]
    reasoning_effort: str | None

    def spec(self) -> ProfileSpec:
        return ProfileSpec(
            name=self.name.strip(),
            model=self.model.strip(),
            instructions=self.instructions.strip(),
            tools=self.tools,
            reasoning_effort=self.reasoning_effort,
        )


async def fill_in(
    terminal: Terminal, *, choices: ProfileChoices, assistant: Profile | None, default_model: str
) -> ProfileSpec | None:
    """The spec the person fills in, starting from the assistant's values (on edit); None if they left it."""
    values = FormValues(
        name=assistant.name if assistant else "",
        model=assistant.model if assistant else default_model,
        instructions=assistant.instructions if assistant else "",
        tools=tuple(tool for tool in assistant.builtin_tools if tool in choices.tools) if assistant else (),
        reasoning_effort=assistant.reasoning_effort if assistant else None,
    )
    fields = ["name", "model", "instructions", "tools", "reasoning_effort"]
    missing = [TOOL_LABELS[tool] for tool in BUILTIN_TOOLS if tool not in choices.tools]
    if not choices.tools:
        fields.remove("tools")  # as in Slack's form: a backend may run none of the built-in tools
    if missing:
        terminal.say(not_available(missing, choices.backend_name))
    terminal.say("Press Enter to keep the value in brackets.")
    while True:
        for field in fields:
            answer = await terminal.ask(_question(field, values, choices))
            if answer is None:
                return None
            if answer.strip():
                _take(field, answer.strip(), values)
        spec = values.spec()
        problems = spec_problems(spec, choices)
        if not problems:
            return spec
        terminal.say("\n".join(f"⚠ {problem}" for problem in problems.values()))
        fields = [field for field in fields if field in problems]


def _question(field: str, values: FormValues, choices: ProfileChoices) -> str:
    if field == "name":
        return f"Name{_default(values.name)}:"
    if field == "model" and not choices.models:  # a server that lists none: any model may be typed
        return f"Model{_default(values.model)}:"
    if field == "model":
        shown = ", ".join(choices.models[:SHOWN_MODELS])
        more = (
            f" and {len(choices.models) - SHOWN_MODELS} more (/assistant models)"
            if len(choices.models) > SHOWN_MODELS
            else ""
        )
        return f"Model, one of {shown}{more}{_default(values.model)}:"
    if field == "instructions":
        instructions = values.instructions.replace("\n", LINE_BREAK)
        if len(instructions) > SHOWN_INSTRUCTIONS:
            instructions = f"{instructions[:SHOWN_INSTRUCTIONS]}…"
        return f"Instructions ({LINE_BREAK} for a line break, - for none){_default(instructions)}:"
    if field == "tools":
        offered = ", ".join(TOOL_LABELS[tool].lower() for tool in choices.tools)
        chosen = ", ".join(TOOL_LABELS.get(tool, tool).lower() for tool in values.tools) or "none"
        return f"Tools, comma-separated, from {offered} (none for none){_default(chosen)}:"
    efforts = ", ".join((DEFAULT_EFFORT, *REASONING_EFFORTS))
    return f"Reasoning effort (reasoning models only), one of {efforts}{_default(values.reasoning_effort or DEFAULT_EFFORT)}:"


def _default(value: str) -> str:
    return f" [{value}]" if value else ""


def _take(field: str, answer: str, values: FormValues) -> None:
    if field == "name":
        values.name = answer
    elif field == "model":
        values.model = answer
    elif field == "instructions":
        values.instructions = "" if answer in NONE else answer.replace(LINE_BREAK, "\n")
    elif field == "tools":
        values.tools = (
            () if answer.lower() in NONE else tuple(_tool(word) for word in answer.split(",") if word.strip())
        )
    else:
        effort = answer.lower()
        values.reasoning_effort = None if effort == DEFAULT_EFFORT else effort


def _tool(typed: str) -> str:
    """The tool a word names: its id or its label, in any case; else the word (refused as not listed)."""
    wanted = typed.strip().lower().replace("_", " ").replace("-", " ")
    for tool in BUILTIN_TOOLS:
        if wanted in (tool.replace("_", " "), TOOL_LABELS[tool].lower()):
            return tool
    return typed.strip()
