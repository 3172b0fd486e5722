"""`python -m bot shell`: a real process driven through its stdin against the OpenAI double, on every backend.

The shell needs no Slack settings: none are given here. Each test says what the terminal shows (stdout)
and what the model received.
"""

from __future__ import annotations

import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import OPENAI_KEY
from doubles.openai import ScriptedRun
from support.file_view import documents_seen, images_seen
from support.model_view import (
    MODEL_CALLS_FOR_AN_INTERRUPTED_ANSWER,
    answer_models,
    conversations_seen,
    first_answer_requests,
    interrupted_answer_script,
)
from support.samples import PNG, pdf_with_text
from support.waiting import eventually

from bot.shell.files import LocalFiles
from bot.shell.repl import split_path


@pytest.fixture(autouse=True)
def migrated_database(tmp_path: Path, migrated_sqlite: Path) -> None:
    """Each test's shells share a database already at the newest migration, as after a first start: each shell
    would otherwise migrate an empty one, the same work every time (the migration tests cover that)."""
    shutil.copyfile(migrated_sqlite, tmp_path / "bot.sqlite3")


def shell_environment(openai: Any, backend: str, tmp_path: Path) -> dict[str, str]:
    """The shell's environment: the OpenAI double, a SQLite file of the test's, and no Slack settings at all."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("SLACK_", "OPENAI_", "DATABASE_"))
    }
    return environment | {
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": openai.base_url,
        "OPENAI_BACKEND": backend,
        "OPENAI_MAX_RETRIES": "2",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.sqlite3'}",
        "STREAM_UPDATE_SECONDS": "0",
        "COLUMNS": "200",  # rich wraps at the terminal's width; a wide one keeps each answer on its line
    }


def shell(openai: Any, backend: str, tmp_path: Path, *lines: str, options: tuple[str, ...] = ()) -> Any:
    """One `python -m bot shell` session typing `lines`, then the end of input; returns the finished process."""
    result = subprocess.run(
        [sys.executable, "-m", "bot", "shell", *options],
        input="".join(f"{line}\n" for line in lines),
        env=shell_environment(openai, backend, tmp_path),
        cwd=tmp_path,  # no .env of the developer's is read
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


def shown_lines(result: Any) -> list[str]:
    """The terminal's lines as a person reads them (rich pads Markdown to the terminal's width)."""
    return [line.rstrip() for line in result.stdout.splitlines()]


def test_a_question_is_answered_through_the_pipeline(openai_double, backend, tmp_path) -> None:
    result = shell(openai_double, backend, tmp_path, "What is a good name for a cat?")
    assert "Echo: What is a good name for a cat?" in shown_lines(result)
    assert conversations_seen(openai_double)[-1] == [("user", "What is a good name for a cat?")]
    # Moderated on its way in, as in Slack.
    assert any(
        request.body.get("input") == "What is a good name for a cat?"
        or "What is a good name for a cat?" in str(request.body.get("input"))
        for request in openai_double.requests_to("POST", r"^/v1/moderations$")
    )


def test_markdown_answers_are_rendered_for_reading(openai_double, backend, tmp_path) -> None:
    openai_double.script(ScriptedRun(text="**Three** ideas:\n\n- Miso\n- Tofu"))
    result = shell(openai_double, backend, tmp_path, "ideas?")
    lines = [line.rstrip() for line in shown_lines(result)]
    assert "Three ideas:" in lines  # the emphasis is drawn, not shown as asterisks
    assert [line.strip() for line in lines if "Miso" in line or "Tofu" in line] == ["• Miso", "• Tofu"]


def test_the_conversation_is_remembered_across_shell_sessions(openai_double, backend, tmp_path) -> None:
    shell(openai_double, backend, tmp_path, "My name is Ada.")
    result = shell(openai_double, backend, tmp_path, "What is my name?")
    assert "Carrying on with the conversation from last time" in result.stdout
    assert "Echo: What is my name?" in shown_lines(result)
    assert conversations_seen(openai_double)[-1] == [
        ("user", "My name is Ada."),
        ("assistant", "Echo: My name is Ada."),
        ("user", "What is my name?"),
    ]


def test_new_starts_the_conversation_afresh(openai_double, backend, tmp_path) -> None:
    shell(openai_double, backend, tmp_path, "My name is Ada.")
    result = shell(openai_double, backend, tmp_path, "What is my name?", options=("--new",))
    assert "the next message starts afresh" in result.stdout
    assert conversations_seen(openai_double)[-1] == [("user", "What is my name?")]


def test_an_image_given_by_path_reaches_the_model(openai_double, backend, tmp_path) -> None:
    (tmp_path / "chart.png").write_bytes(PNG)
    result = shell(openai_double, backend, tmp_path, "/image chart.png What does this show?")
    assert "Echo: What does this show?" in shown_lines(result)
    assert images_seen(openai_double, backend) == [PNG]


def test_a_document_given_by_path_goes_with_the_next_message(openai_double, backend, tmp_path) -> None:
    (tmp_path / "report.pdf").write_bytes(pdf_with_text("Q3 revenue grew 5%."))
    result = shell(openai_double, backend, tmp_path, "/file report.pdf", "Summarise it.")
    assert "report.pdf goes with your next message." in result.stdout
    assert "Echo: Summarise it." in shown_lines(result)
    assert documents_seen(openai_double, backend) == {"report.pdf"}


def test_a_missing_file_is_refused_with_a_clear_message_and_nothing_is_asked(openai_double, backend, tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("not a picture")
    result = shell(openai_double, backend, tmp_path, "/file missing.pdf", "/image notes.txt", "/file .", "Hello")
    assert "⚠ I couldn't use that file: there is no file at missing.pdf." in result.stdout
    assert "⚠ I couldn't use that file: notes.txt is not an image" in result.stdout
    assert "⚠ I couldn't use that file: . is a folder, not a file." in result.stdout
    # The message after them goes alone: no refused file rides along.
    assert conversations_seen(openai_double)[-1] == [("user", "Hello")]
    assert images_seen(openai_double, backend) == []


def test_assistant_commands_use_the_same_services_as_slack(openai_double, backend, tmp_path) -> None:
    shell(openai_double, backend, tmp_path, "Hello")
    result = shell(openai_double, backend, tmp_path, "/assistant show", "/assistant models", "/assistant usage")
    out = result.stdout
    assert "The shell uses Slack Assistant" in out and "model gpt-4o-mini), the default assistant" in out
    assert f"The conversation's memory: kept by the {backend} backend" in out
    assert "Models available (5):" in out and "  ft:gpt-4o-mini:acme::abc123 (fine-tuned)" in out
    assert "Last 7 days: " in out and "Last 7 days: 0 (0 + 0)" not in out  # the first session's tokens count


def test_use_of_an_assistant_that_does_not_exist_is_explained(openai_double, backend, tmp_path) -> None:
    result = shell(openai_double, backend, tmp_path, "/assistant use nobody-by-this-name")
    assert "No assistant has the id or name “nobody-by-this-name”." in result.stdout


def test_forget_asks_first_then_deletes_the_conversation(openai_double, backend, tmp_path) -> None:
    shell(openai_double, backend, tmp_path, "My name is Ada.")
    result = shell(openai_double, backend, tmp_path, "/assistant forget", "no", "/assistant forget", "yes", "Who am I?")
    assert "Nothing was deleted." in result.stdout
    assert "Forgotten: deleted 1 conversation memory" in result.stdout
    assert conversations_seen(openai_double)[-1] == [("user", "Who am I?")]


def test_an_unknown_command_is_explained(openai_double, backend, tmp_path) -> None:
    result = shell(openai_double, backend, tmp_path, "/frobnicate", "/assistant frobnicate")
    assert "I don't know /frobnicate; /help lists the commands." in result.stdout
    assert "I don't know /assistant frobnicate." in result.stdout
    assert openai_double.model_calls == 0


@pytest.mark.backends("assistants", "responses", reason="chat completions run no code interpreter: no files are made")
def test_a_file_the_assistant_made_is_saved_and_the_answer_links_to_it(openai_double, backend, tmp_path) -> None:
    table = openai_double.add_output_file("/mnt/data/sales.csv", b"month,total\nJan,10\n")
    (tmp_path / "shell-files").mkdir()
    (tmp_path / "shell-files" / "sales.csv").write_text("an older file, kept")
    link = "sandbox:/mnt/data/sales.csv"
    openai_double.script(
        ScriptedRun(text=f"Done: [download the table]({link})", annotations=[("file_path", link, table)])
    )
    result = shell(openai_double, backend, tmp_path, "Make a table of sales.")
    saved = tmp_path / "shell-files" / "sales-2.csv"  # never over a file that is there
    assert saved.read_bytes() == b"month,total\nJan,10\n"
    assert (tmp_path / "shell-files" / "sales.csv").read_text() == "an older file, kept"
    assert f"Saved sales-2.csv, a file the assistant made, to {saved.relative_to(tmp_path)}" in result.stdout
    assert "Done: download the table" in shown_lines(result)


def started_shell(openai: Any, backend: str, tmp_path: Path, line: str) -> subprocess.Popen[bytes]:
    """A shell session that has been typed `line` and goes on running (its input left open)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "shell"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=shell_environment(openai, backend, tmp_path),
        cwd=tmp_path,
    )
    assert process.stdin is not None
    process.stdin.write(f"{line}\n".encode())
    process.stdin.flush()
    return process


async def test_an_answer_cut_off_by_a_killed_shell_is_finished_at_the_next_start(
    openai_double, backend, tmp_path
) -> None:
    answer = ScriptedRun(text="Slow answer, finally.", chunks=10, chunk_delay=0.3)
    openai_double.script(*interrupted_answer_script(answer, backend))
    first = started_shell(openai_double, backend, tmp_path, "Take your time.")
    await eventually(lambda: first_answer_requests(openai_double, backend), what="the model asked")
    first.kill()
    first.wait(timeout=10)
    result = shell(openai_double, backend, tmp_path)  # types nothing: the earlier answer is finished first
    assert "Slow answer, finally." in shown_lines(result)
    assert openai_double.model_calls == MODEL_CALLS_FOR_AN_INTERRUPTED_ANSWER[backend]
    assert [text for role, text in conversations_seen(openai_double)[-1] if role == "user"] == ["Take your time."]


# Files by path, in their own right ---------------------------------------------------------------


def test_a_quoted_path_may_hold_spaces() -> None:
    assert split_path('"my report.pdf" what is in it?') == ("my report.pdf", "what is in it?")
    assert split_path("report.pdf") == ("report.pdf", "")


async def test_files_past_the_limit_and_devices_are_refused(tmp_path) -> None:
    from bot.errors import FileRefused

    files = LocalFiles(max_mb=1)
    big = tmp_path / "big.csv"
    big.write_bytes(b"x" * (1024 * 1024 + 1))
    for typed, reason in (
        (str(big), "larger than the 1 MB limit"),
        ("/dev/zero", "not a regular file"),
        (str(tmp_path / "nowhere.txt"), "there is no file at"),
    ):
        try:
            files.attach(typed)
        except FileRefused as exc:
            assert reason in str(exc)
        else:
            raise AssertionError(f"{typed} was attached")
    # A file that grows past the limit after it was given is refused when read.
    grows = tmp_path / "grows.csv"
    grows.write_bytes(b"a,b\n")
    shared = files.attach(str(grows))
    grows.write_bytes(b"x" * (1024 * 1024 + 1))
    try:
        await files.fetch(shared, team_id="T0SHELL")
    except FileRefused as exc:
        assert "larger than the 1 MB limit" in str(exc)
    else:
        raise AssertionError("the grown file was read")


def test_shell_needs_no_slack_settings_while_run_names_the_missing_ones(openai_double, tmp_path) -> None:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("SLACK_", "OPENAI_", "DATABASE_"))
    }
    environment |= {"OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": openai_double.base_url}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "run"],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("configuration error: SLACK_BOT_TOKEN")
    assert "SLACK_SIGNING_SECRET (HTTP mode) or SLACK_APP_TOKEN (Socket Mode)" in line
    assert line.endswith("`python -m bot shell` talks to the assistant in a terminal without them")


def test_the_status_line_shows_tool_work_while_it_answers(openai_double, backend, tmp_path) -> None:
    openai_double.script(ScriptedRun(tool_calls=[("get_current_time", {})], text_after_tools="It is noon."))
    result = shell(openai_double, backend, tmp_path, "What time is it?")
    lines = shown_lines(result)
    assert lines.index("… Thinking…") < lines.index("… Running get_current_time…") < lines.index("It is noon.")


def test_on_a_terminal_the_answer_streams_in_place_and_stays(openai_double, backend, tmp_path) -> None:
    openai_double.script(ScriptedRun(text="**Streamed** answer, word by word.", chunks=6, chunk_delay=0.05))
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("SLACK_", "OPENAI_", "DATABASE_"))
    }
    environment |= {
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": openai_double.base_url,
        "OPENAI_BACKEND": backend,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.sqlite3'}",
        "STREAM_UPDATE_SECONDS": "0",
        "TERM": "xterm-256color",
        "COLUMNS": "120",
    }
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "shell"],
        stdin=subprocess.PIPE,
        stdout=terminal,
        stderr=terminal,
        env=environment,
        cwd=tmp_path,
    )
    os.close(terminal)
    assert process.stdin is not None
    process.stdin.write(b"Stream it, please.\n")
    process.stdin.close()
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the shell has exited
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    assert process.wait(timeout=120) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.decode(errors="replace"))
    # Redrawn in place while it streams, then left on screen as Markdown (the bold drawn, not its asterisks).
    assert text.rstrip().splitlines()[-1].rstrip() == "Streamed answer, word by word."
    assert conversations_seen(openai_double)[-1] == [("user", "Stream it, please.")]


def test_an_unreachable_api_ends_the_shell_with_one_line(tmp_path) -> None:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("SLACK_", "OPENAI_", "DATABASE_"))
    }
    environment |= {"OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": "http://127.0.0.1:1/v1", "OPENAI_MAX_RETRIES": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "shell"],
        input="Hello\n",
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "configuration error: could not reach the API at 127.0.0.1:1; check OPENAI_BASE_URL"
    ]


# /assistant create and edit: Slack's form, field by field -------------------------------------------------

# What each backend offers in the form: the chat backend runs no built-in tool, so its form asks for none.
TOOL_TYPED = {"responses": "web search", "assistants": "file search"}
TOOL_SAVED = {"responses": "web_search", "assistants": "file_search"}


def form(backend: str, *, name: str, model: str, instructions: str, tools: str, effort: str) -> list[str]:
    """The answers to the form's fields, in its order; the tools are not asked on a backend that runs none."""
    return [name, model, instructions, *([tools] if backend != "chat" else []), effort]


def system_texts(openai: Any) -> list[str]:
    """The instructions the newest model call was given."""
    return [text for role, text in openai.model_inputs()[-1] if role == "system"]


def test_create_makes_an_assistant_the_shell_then_answers_with(openai_double, backend, tmp_path) -> None:
    answers = form(backend, name="Pirate", model="gpt-4o", instructions="Talk like a pirate.", tools="", effort="")
    result = shell(openai_double, backend, tmp_path, "/assistant create", *answers, "Ahoy?")
    out = result.stdout
    assert "Name:" in out and "Model, one of ft:gpt-4o-mini:acme::abc123, " in out
    assert "gpt-4o, gpt-4o-mini [gpt-4o-mini]:" in out  # the default assistant's model, unless another is typed
    assert "Created Pirate (" in out and "model gpt-4o). The shell uses it now." in out
    assert "Echo: Ahoy?" in shown_lines(result)
    assert answer_models(openai_double, backend) == ["gpt-4o"]
    assert any("Talk like a pirate." in text for text in system_texts(openai_double))
    # The shell's choice lasts: the next session answers with the new assistant too.
    shown = shell(openai_double, backend, tmp_path, "/assistant show").stdout
    assert "The shell uses Pirate (" in shown and "chosen for the shell" in shown


def test_edit_keeps_each_value_on_enter_and_changes_what_is_typed(openai_double, backend, tmp_path) -> None:
    with openai_double.core.lock:  # a reasoning model: only those keep a reasoning effort on every backend
        openai_double.core.family("models").models["o4-mini"] = "system"
    created = form(
        backend,
        name="Pirate",
        model="o4-mini",
        instructions="Talk like a pirate.",
        tools=TOOL_TYPED.get(backend, ""),
        effort="low",
    )
    kept = form(backend, name="Captain", model="", instructions="", tools="", effort="")
    result = shell(
        openai_double,
        backend,
        tmp_path,
        "/assistant create",
        *created,
        "/assistant edit",
        *kept,
        "/assistant show",
        "Ahoy?",
    )
    out = result.stdout
    # The form shows what the assistant has, and Enter keeps it.
    assert "Name [Pirate]:" in out and "[o4-mini]:" in out and "[Talk like a pirate.]:" in out and "[low]:" in out
    assert "Saved Captain (" in out and "model o4-mini). The shell uses it now." in out
    assert "Instructions: Talk like a pirate." in out
    assert f"Tools: {TOOL_SAVED.get(backend, 'none')}" in out
    assert "Reasoning effort: low" in out
    assert answer_models(openai_double, backend) == ["o4-mini"]
    assert any("Talk like a pirate." in text for text in system_texts(openai_double))


def test_a_refused_value_is_explained_and_asked_again(openai_double, backend, tmp_path) -> None:
    refused_tool = {"responses": "telepathy", "assistants": "web search"}
    first = form(
        backend,
        name="Deep",
        model="gpt-9-imaginary",
        instructions="Think.",
        tools=refused_tool.get(backend, ""),
        effort="extreme",
    )
    again = ["gpt-4o", *(["none"] if backend != "chat" else []), "low"]  # only the refused fields are asked again
    result = shell(openai_double, backend, tmp_path, "/assistant create", *first, *again, "Hi")
    out = result.stdout
    assert "⚠ gpt-9-imaginary is not one of the models listed." in out
    assert "⚠ Choose one of the efforts listed." in out
    if backend == "assistants":
        assert "⚠ Web search is not available on the assistants backend." in out
    elif backend == "responses":
        assert "⚠ Choose only the tools listed." in out
    else:
        assert (
            "File search, Code interpreter, Web search and Image generation are not available on the chat backend."
            in out
        )
    assert out.count("Created Deep (") == 1 and "model gpt-4o). The shell uses it now." in out
    assert answer_models(openai_double, backend) == ["gpt-4o"]
    assert any("Think." in text for text in system_texts(openai_double))


def test_leaving_the_form_saves_nothing(openai_double, backend, tmp_path) -> None:
    result = shell(openai_double, backend, tmp_path, "/assistant create", "Half-made")  # then the end of input
    assert "Nothing was saved." in result.stdout
    shown = shell(openai_double, backend, tmp_path, "/assistant list").stdout
    assert "Half-made" not in shown
