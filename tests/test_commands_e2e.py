"""End to end: slash commands, the forget buttons, the assistant modal and App Home, against the doubles."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
from sqlalchemy import func, select, update

from bot.openai_api.client import OpenAIClient
from bot.store.channels import ChannelStore
from bot.store.models import ApiFile, Conversation, RetiredThread, TurnRecord
from conftest import OPENAI_KEY, SIGNING_SECRET
from doubles.openai import GENERATED_IMAGE_PNG
from doubles.slack_events import block_action_body, deliver_form, slash_command_body, view_submission_body
from support.api_threads import user_contents
from support.slack_view import bot_texts
from support.workspace import BOT, CHANNEL, DM

TEAM = "T0TEAM"
ADMIN = "U0ADA"  # named in ADMIN_USER_IDS where a test needs an admin
NOT_ADMIN = "U0BOB"
_triggers = itertools.count(1)


async def run_command(bot, slack, command: str, text: str, *, user: str = ADMIN, channel: str = CHANNEL) -> httpx.Response:
    """Slack posts the slash command; the bot must ack at once (the helper's 3 s timeout); then its work settles."""
    response_url = slack.new_response_url(channel=channel, user=user)
    body = slash_command_body(
        command, text, team_id=TEAM, channel_id=channel, user_id=user,
        response_url=response_url, trigger_id=f"trigger-{next(_triggers)}",
    )
    response = await deliver_form(bot.url, body, SIGNING_SECRET)
    assert response.status_code == 200, response.text
    await bot.settle()
    return response


def ephemeral_texts(slack, channel: str = CHANNEL, user: str = ADMIN) -> list[str]:
    return [message["text"] for message in slack.ephemeral(channel, user)]


def last_ephemeral(slack, channel: str = CHANNEL, user: str = ADMIN) -> str:
    texts = ephemeral_texts(slack, channel, user)
    assert texts, "nothing was answered ephemerally"
    return texts[-1]


def api_client(openai) -> OpenAIClient:
    return OpenAIClient(api_key=OPENAI_KEY, base_url=openai.base_url, max_retries=0)


async def create_assistant(openai, name: str, model: str = "gpt-4o") -> str:
    async with api_client(openai) as client:
        return (await client.create_assistant(model=model, name=name, instructions=f"You are {name}.")).id


def thread_of_run(openai) -> list[tuple[str, str]]:
    """(thread id, assistant id) of every run, in order."""
    runs = openai.requests_to("POST", r"^/v1/threads/[^/]+/runs$")
    return [(run.path.split("/")[3], run.body["assistant_id"]) for run in runs]


async def changes(bot) -> list[tuple[str, str, str | None, str | None]]:
    rows = await ChannelStore(bot.bot.store).assistant_changes(team_id=TEAM, channel_id=CHANNEL)
    return [(row.user_id, row.action, row.from_assistant_id, row.to_assistant_id) for row in rows]


async def default_assistant_id(bot) -> str:
    return await bot.bot.store.get_state("default_assistant_id")


# /ask ---------------------------------------------------------------------------------------


async def test_ask_posts_the_question_and_answers_in_its_thread_where_others_follow_up(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot()
    response = await run_command(bot, slack_double, "/ask", "Which release ships on Friday?")
    assert response.text == ""  # an empty ack; everything else came after
    top = slack_double.messages(CHANNEL)
    assert [m["text"] for m in top] == ["*Ada asked:* Which release ships on Friday?"]
    question_ts = top[0]["ts"]
    assert bot_texts(slack_double, CHANNEL, question_ts)[1:] == ["Echo: Ada: Which release ships on Friday?"]
    await bot.say(CHANNEL, "U0BOB", "and on Monday?", thread_ts=question_ts)
    assert bot_texts(slack_double, CHANNEL, question_ts)[1:] == [
        "Echo: Ada: Which release ships on Friday?",
        "Echo: Bob: and on Monday?",
    ]
    [(thread_id, _), _] = thread_of_run(openai_double)
    assert user_contents(openai_double, thread_id) == ["Ada: Which release ships on Friday?", "Bob: and on Monday?"]
    assert ephemeral_texts(slack_double) == []


async def test_ask_without_a_question_or_where_the_bot_is_not_explains_ephemerally(
    start_bot, slack_double, openai_double
) -> None:
    slack_double.add_channel("C0RANDOM", name="random", members=["U0ADA"])
    bot = await start_bot()
    await run_command(bot, slack_double, "/ask", "   ")
    assert last_ephemeral(slack_double).startswith("Usage: `/ask <question>`")
    await run_command(bot, slack_double, "/ask", "hello?", channel="C0RANDOM")
    assert "I'm not in this channel" in last_ephemeral(slack_double, "C0RANDOM")
    assert slack_double.messages("C0RANDOM") == [] and slack_double.messages(CHANNEL) == []
    assert all(post.body["response_type"] == "ephemeral" for post in slack_double.response_url_posts)
    assert openai_double.requests_to("POST", r"^/v1/threads") == []


# /imagine -----------------------------------------------------------------------------------


async def test_imagine_moderates_the_prompt_then_uploads_the_image_with_the_prompt(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot(image_model="gpt-image-1", image_size="1536x1024")
    await run_command(bot, slack_double, "/imagine", "a lighthouse in a storm")
    paths = [request.path for request in openai_double.requests if request.method == "POST"]
    assert paths.index("/v1/moderations") < paths.index("/v1/images/generations")
    generation = openai_double.requests_to("POST", r"^/v1/images/generations$")[0].body
    assert generation == {"model": "gpt-image-1", "prompt": "a lighthouse in a storm", "size": "1536x1024", "n": 1}
    [posted] = slack_double.bot_messages(CHANNEL)
    assert posted["text"] == "*Ada imagined:* a lighthouse in a storm"
    assert [file["title"] for file in posted["files"]] == ["a lighthouse in a storm"]
    upload = slack_double.calls_to("files.completeUploadExternal")[0]
    assert upload.params["channel_id"] == CHANNEL


async def test_imagine_follows_a_link_answer_without_sending_the_api_key(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot(image_model="dall-e-3")
    await run_command(bot, slack_double, "/imagine", "a red bicycle")
    [posted] = slack_double.bot_messages(CHANNEL)
    assert posted["files"][0]["size"] == len(GENERATED_IMAGE_PNG)
    # The double records a violation if the download carried the Authorization header.


async def test_imagine_refuses_a_flagged_prompt_without_calling_the_image_model(
    start_bot, slack_double, openai_double
) -> None:
    openai_double.moderation_flags = {"gore": ["violence/graphic"]}
    bot = await start_bot()
    await run_command(bot, slack_double, "/imagine", "lots of gore")
    assert "flagged the prompt for graphic violence" in last_ephemeral(slack_double)
    assert openai_double.requests_to("POST", r"^/v1/images") == []
    assert slack_double.bot_messages(CHANNEL) == []
    await run_command(bot, slack_double, "/imagine", "")
    assert last_ephemeral(slack_double).startswith("Usage: `/imagine <prompt>`")


# /assistant: help, usage errors, show, list, models ---------------------------------------------


async def test_help_lists_every_subcommand_and_bad_input_gets_the_usage(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    await run_command(bot, slack_double, "/assistant", "help")
    help_text = last_ephemeral(slack_double)
    for usage in ("help", "show", "list", "use <id or name>", "create", "edit", "reset", "new", "forget", "models", "usage"):
        assert f"`/assistant {usage}`" in help_text
    assert "_This conversation_ means" in help_text
    await run_command(bot, slack_double, "/assistant", "frobnicate now")
    assert last_ephemeral(slack_double) == f"I don't know `/assistant frobnicate`.\n\n{help_text}"
    await run_command(bot, slack_double, "/assistant", "use")
    usage = "Usage: `/assistant use <id or name>` (make this channel use that assistant (admins))."
    assert last_ephemeral(slack_double) == usage
    await run_command(bot, slack_double, "/assistant", "show everything")
    assert last_ephemeral(slack_double).startswith("Usage: `/assistant show`")
    assert openai_double.requests == []


async def test_show_names_the_channel_assistant_and_this_conversations_api_thread(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot()
    await run_command(bot, slack_double, "/assistant", "show")
    first = last_ephemeral(slack_double)
    assert "*This channel uses Slack Assistant*" in first and "the default assistant" in first
    assert "Model: `gpt-4o-mini`" in first and "no conversation with me here yet" in first
    await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> hello")
    [(thread_id, _)] = thread_of_run(openai_double)
    await run_command(bot, slack_double, "/assistant", "show")
    assert f"This conversation's API thread: `{thread_id}`" in last_ephemeral(slack_double)


async def test_list_pages_through_every_assistant_on_the_account(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    async with api_client(openai_double) as client:
        for number in range(104):
            await client.create_assistant(model="gpt-4o", name=f"Helper {number}")
    await run_command(bot, slack_double, "/assistant", "list")
    text = last_ephemeral(slack_double)
    assert text.startswith("*Assistants on this account (105)*")  # 104 plus the default one
    assert "…and 55 more." in text and "← this channel" in text
    assert len(openai_double.requests_to("GET", r"^/v1/assistants$")) == 2


async def test_models_are_grouped_with_fine_tuned_ones_marked(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    await run_command(bot, slack_double, "/assistant", "models")
    assert last_ephemeral(slack_double) == "\n".join(
        [
            "*Models available (5)*",
            "*Fine-tuned*",
            "• `ft:gpt-4o-mini:acme::abc123` (fine-tuned)",
            "*Chat models*",
            "• `gpt-4.1-mini`",
            "• `gpt-4o`",
            "• `gpt-4o-mini`",
            "*Other models*",
            "• `omni-moderation-latest`",
        ]
    )


# Changing the channel's assistant -------------------------------------------------------------


async def test_use_by_name_binds_the_channel_records_the_change_and_runs_use_it(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot(admin_user_ids=ADMIN)
    pirate = await create_assistant(openai_double, "Pirate")
    await run_command(bot, slack_double, "/assistant", "use pirate")
    assert last_ephemeral(slack_double) == f"This channel now uses *Pirate* (`{pirate}`, model `gpt-4o`)."
    await bot.say(CHANNEL, "U0BOB", f"<@{BOT}> ahoy")
    assert [assistant for _, assistant in thread_of_run(openai_double)] == [pirate]
    assert await changes(bot) == [(ADMIN, "use", await default_assistant_id(bot), pirate)]
    await run_command(bot, slack_double, "/assistant", "show")
    assert "*This channel uses Pirate*" in last_ephemeral(slack_double)


async def test_use_by_id_is_validated_against_the_api(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot(admin_user_ids=f'["{ADMIN}"]')
    await run_command(bot, slack_double, "/assistant", "use asst_doesnotexist")
    assert last_ephemeral(slack_double).startswith("There is no assistant `asst_doesnotexist` on this account.")
    await run_command(bot, slack_double, "/assistant", "use Nobody Here")
    assert last_ephemeral(slack_double).startswith("No assistant is named “Nobody Here”.")
    assert await changes(bot) == []
    assert await bot.bot.store.channel_assistant(team_id=TEAM, channel_id=CHANNEL) is None


async def test_people_who_are_not_admins_are_refused_and_workspace_admins_are_not(
    start_bot, slack_double, openai_double
) -> None:
    slack_double.add_user("U0OWNER", name="olga", display_name="Olga", is_owner=True)
    bot = await start_bot(admin_user_ids=ADMIN)
    pirate = await create_assistant(openai_double, "Pirate")
    for text in (f"use {pirate}", "create", "edit", "reset"):
        await run_command(bot, slack_double, "/assistant", text, user=NOT_ADMIN)
        assert last_ephemeral(slack_double, user=NOT_ADMIN).startswith("Only workspace admins and owners")
    assert len(ephemeral_texts(slack_double, user=NOT_ADMIN)) == 4
    assert slack_double.calls_to("views.open") == [] and await changes(bot) == []
    await run_command(bot, slack_double, "/assistant", f"use {pirate}", user="U0OWNER")
    assert await changes(bot) == [("U0OWNER", "use", await default_assistant_id(bot), pirate)]


async def test_reset_puts_the_channel_back_on_the_default_assistant(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot(admin_user_ids=ADMIN)
    pirate = await create_assistant(openai_double, "Pirate")
    await run_command(bot, slack_double, "/assistant", f"use {pirate}")
    await run_command(bot, slack_double, "/assistant", "reset")
    default = await default_assistant_id(bot)
    assert last_ephemeral(slack_double).startswith("This channel uses the default assistant again: *Slack Assistant*")
    assert await bot.bot.store.channel_assistant(team_id=TEAM, channel_id=CHANNEL) is None
    assert await changes(bot) == [(ADMIN, "use", default, pirate), (ADMIN, "reset", pirate, default)]
    await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> who are you?")
    assert [assistant for _, assistant in thread_of_run(openai_double)] == [default]


# The assistant modal ---------------------------------------------------------------------------


def opened_view(slack) -> dict[str, Any]:
    """The one modal opened, as views.open returned it."""
    assert len(slack.calls_to("views.open")) == 1
    [view] = [view for view in slack.views() if view["type"] == "modal"]
    return view


def form_values(
    *, name: str = "", model: str | None = None, instructions: str = "", tools: tuple[str, ...] = ()
) -> dict[str, Any]:
    option = (lambda value: {"text": {"type": "plain_text", "text": value}, "value": value})
    return {
        "name": {"value": {"type": "plain_text_input", "value": name}},
        "model": {"value": {"type": "static_select", "selected_option": option(model) if model else None}},
        "instructions": {"value": {"type": "plain_text_input", "value": instructions}},
        "tools": {"value": {"type": "checkboxes", "selected_options": [option(tool) for tool in tools]}},
    }


async def submit(bot, view: dict[str, Any], values: dict[str, Any], *, user: str = ADMIN) -> httpx.Response:
    body = view_submission_body(view, values, team_id=TEAM, user_id=user, trigger_id=f"trigger-{next(_triggers)}")
    response = await deliver_form(bot.url, body, SIGNING_SECRET)
    assert response.status_code == 200, response.text
    await bot.settle()
    return response


def current_view(slack, view_id: str) -> dict[str, Any]:
    return next(view for view in slack.views() if view["id"] == view_id)


def view_text(view: dict[str, Any]) -> str:
    return "\n".join(block["text"]["text"] for block in view["blocks"] if block["type"] == "section")


async def test_create_opens_a_form_whose_submission_creates_binds_and_records(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot(admin_user_ids=ADMIN)
    await run_command(bot, slack_double, "/assistant", "create")
    view = opened_view(slack_double)
    groups = {g["label"]["text"]: [o["value"] for o in g["options"]] for g in view["blocks"][1]["element"]["option_groups"]}
    assert groups == {"Fine-tuned": ["ft:gpt-4o-mini:acme::abc123"], "Models": ["gpt-4.1-mini", "gpt-4o", "gpt-4o-mini"]}
    values = form_values(name="Release helper", model="ft:gpt-4o-mini:acme::abc123", instructions="Be brief.",
                         tools=("code_interpreter",))
    response = await submit(bot, view, values)
    assert response.json()["response_action"] == "update"
    [created] = [a for a in openai_double.assistants() if a["name"] == "Release helper"]
    assert created["model"] == "ft:gpt-4o-mini:acme::abc123" and created["instructions"] == "Be brief."
    assert created["tools"] == [{"type": "code_interpreter"}]
    assert await bot.bot.store.channel_assistant(team_id=TEAM, channel_id=CHANNEL) == created["id"]
    assert await changes(bot) == [(ADMIN, "create", await default_assistant_id(bot), created["id"])]
    assert view_text(current_view(slack_double, view["id"])).startswith("Created *Release helper*")


async def test_the_form_reports_missing_fields_next_to_them(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot(admin_user_ids=ADMIN)
    await run_command(bot, slack_double, "/assistant", "create")
    response = await submit(bot, opened_view(slack_double), form_values(name="  "))
    assert response.json() == {
        "response_action": "errors",
        "errors": {"name": "Give the assistant a name.", "model": "Choose a model."},
    }
    assert openai_double.requests_to("POST", r"^/v1/assistants") == [] and await changes(bot) == []


async def test_a_model_the_api_does_not_know_is_reported_and_nothing_changes(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot(admin_user_ids=ADMIN)
    await run_command(bot, slack_double, "/assistant", "create")
    view = opened_view(slack_double)
    openai_double.fail_next(
        "POST", r"^/v1/assistants$", status=404, code="model_not_found", message="The model 'gpt-4o' does not exist"
    )
    await submit(bot, view, form_values(name="Helper", model="gpt-4o"))
    assert view_text(current_view(slack_double, view["id"])) == (
        "The model `gpt-4o` is not available to this account. Choose another one and try again."
    )
    assert await changes(bot) == []
    assert await bot.bot.store.channel_assistant(team_id=TEAM, channel_id=CHANNEL) is None


async def test_edit_prefills_the_form_and_updates_the_channels_assistant(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot(admin_user_ids=ADMIN)
    pirate = await create_assistant(openai_double, "Pirate")
    await run_command(bot, slack_double, "/assistant", f"use {pirate}")
    await run_command(bot, slack_double, "/assistant", "edit")
    view = opened_view(slack_double)
    assert view["blocks"][0]["element"]["initial_value"] == "Pirate"
    assert view["blocks"][1]["element"]["initial_option"]["value"] == "gpt-4o"
    assert view["blocks"][2]["element"]["initial_value"] == "You are Pirate."
    await submit(bot, view, form_values(name="Pirate", model="gpt-4.1-mini", instructions="Talk like a pirate.",
                                        tools=("file_search",)))
    [update_request] = openai_double.requests_to("POST", rf"^/v1/assistants/{pirate}$")
    assert update_request.body == {
        "name": "Pirate", "model": "gpt-4.1-mini", "tools": [{"type": "file_search"}], "instructions": "Talk like a pirate."
    }
    assert (await changes(bot))[-1] == (ADMIN, "edit", pirate, pirate)
    assert view_text(current_view(slack_double, view["id"])).startswith("Saved *Pirate*")


# new, forget, usage -----------------------------------------------------------------------------


async def test_new_moves_the_conversation_to_a_fresh_api_thread_and_keeps_the_old_one(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot()
    root = await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> remember the number 7")
    [(old_thread, _)] = thread_of_run(openai_double)
    await run_command(bot, slack_double, "/assistant", "new")
    await bot.say(CHANNEL, "U0ADA", "what was the number?", thread_ts=root)
    new_thread = thread_of_run(openai_double)[-1][0]
    assert new_thread != old_thread
    assert f"fresh API thread (`{new_thread}`)" in last_ephemeral(slack_double)
    assert user_contents(openai_double, new_thread) == ["Ada: what was the number?"]
    assert user_contents(openai_double, old_thread) == ["Ada: remember the number 7"]  # kept on the API
    async with bot.bot.store.transaction() as session:
        assert list(await session.scalars(select(RetiredThread.api_thread_id))) == [old_thread]


async def test_new_in_a_dm_means_the_rolling_conversation(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    await run_command(bot, slack_double, "/assistant", "new", channel=DM)
    assert last_ephemeral(slack_double, DM).startswith("There is no conversation with me here yet")
    await bot.say(DM, "U0ADA", "hi")
    await run_command(bot, slack_double, "/assistant", "new", channel=DM)
    await bot.say(DM, "U0ADA", "hi again")
    [first, second] = [thread for thread, _ in thread_of_run(openai_double)]
    assert first != second and user_contents(openai_double, second) == ["hi again"]


async def test_forget_asks_first_then_deletes_on_the_api_and_in_the_database(
    start_bot, slack_double, openai_double, database_url
) -> None:
    bot = await start_bot(database_url=database_url)
    await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> something private")
    await run_command(bot, slack_double, "/assistant", "new")
    root = slack_double.messages(CHANNEL)[0]["ts"]
    await bot.say(CHANNEL, "U0ADA", "more private things", thread_ts=root)
    threads = {thread for thread, _ in thread_of_run(openai_double)}
    assert len(threads) == 2
    # What the files flow leaves behind for a conversation: an uploaded file and a vector store.
    async with api_client(openai_double) as client:
        file_id = (await client.request("POST", "/files", files={"file": ("notes.txt", b"secret")},
                                        data={"purpose": "assistants"}))["id"]
        store_id = (await client.request("POST", "/vector_stores", json={"name": "conversation"}))["id"]
    conversation = await bot.bot.store.find_conversation(team_id=TEAM, channel_id=CHANNEL, thread_key=root)
    async with bot.bot.store.transaction() as session:
        await session.execute(
            update(Conversation).where(Conversation.id == conversation.id).values(vector_store_id=store_id)
        )
        session.add(ApiFile(team_id=TEAM, channel_id=CHANNEL, slack_file_id="F0NOTES", conversation_id=conversation.id,
                            api_file_id=file_id, purpose="assistants", filename="notes.txt"))

    await run_command(bot, slack_double, "/assistant", "forget")
    question = slack_double.ephemeral(CHANNEL, ADMIN)[-1]
    assert question["text"].startswith("Forget this conversation?")
    assert {thread["id"] for thread in openai_double.threads()} >= threads  # nothing deleted before the click
    confirm = next(e for e in question["blocks"][1]["elements"] if e["action_id"] == "forget_confirm")
    click_url = slack_double.new_response_url(channel=CHANNEL, user=ADMIN)
    body = block_action_body(
        action_id="forget_confirm", value=confirm["value"], team_id=TEAM, channel_id=CHANNEL, user_id=ADMIN,
        message=question, response_url=click_url, trigger_id=f"trigger-{next(_triggers)}",
    )
    assert (await deliver_form(bot.url, body, SIGNING_SECRET)).status_code == 200
    await bot.settle()

    assert last_ephemeral(slack_double) == (
        "Forgotten: deleted 2 API thread(s), 1 file(s), 1 vector store(s), and my records of the conversation."
    )
    assert slack_double.response_url_posts[-1].body["replace_original"] is True
    assert not threads & {thread["id"] for thread in openai_double.threads()}
    assert openai_double.files() == [] and openai_double.vector_stores() == []
    async with bot.bot.store.transaction() as session:
        for model in (Conversation, TurnRecord, RetiredThread, ApiFile):
            assert await session.scalar(select(func.count()).select_from(model)) == 0
    assert len(slack_double.messages(CHANNEL, thread_ts=root)) > 1  # the Slack messages stay


async def test_forget_cancelled_deletes_nothing(start_bot, slack_double, openai_double) -> None:
    bot = await start_bot()
    await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> keep this")
    await run_command(bot, slack_double, "/assistant", "forget")
    question = slack_double.ephemeral(CHANNEL, ADMIN)[-1]
    body = block_action_body(
        action_id="forget_cancel", value="", team_id=TEAM, channel_id=CHANNEL, user_id=ADMIN, message=question,
        response_url=slack_double.new_response_url(channel=CHANNEL, user=ADMIN), trigger_id="trigger-cancel",
    )
    assert (await deliver_form(bot.url, body, SIGNING_SECRET)).status_code == 200
    await bot.settle()
    assert last_ephemeral(slack_double) == "Nothing was deleted."
    assert openai_double.requests_to("DELETE", r".") == []
    assert len(openai_double.threads()) == 1


async def test_usage_counts_each_runs_tokens_for_the_person_and_the_channel(
    start_bot, slack_double, openai_double, database_url
) -> None:
    bot = await start_bot(database_url=database_url)
    await bot.say(CHANNEL, "U0ADA", f"<@{BOT}> one two three")
    await bot.say(CHANNEL, "U0BOB", f"<@{BOT}> four five")
    await bot.say(DM, "U0ADA", "six")
    async with bot.bot.store.transaction() as session:
        rows = (await session.execute(select(TurnRecord.user_id, TurnRecord.channel_id, TurnRecord.prompt_tokens,
                                             TurnRecord.completion_tokens))).all()
    assert all(row.prompt_tokens for row in rows)
    ada = sum(row.prompt_tokens + row.completion_tokens for row in rows if row.user_id == "U0ADA")
    channel = sum(row.prompt_tokens + row.completion_tokens for row in rows if row.channel_id == CHANNEL)
    await run_command(bot, slack_double, "/assistant", "usage")
    lines = last_ephemeral(slack_double).splitlines()
    assert lines[0] == "*Tokens used* (prompt + completion)"
    assert lines[1].startswith(f"• Last 7 days: you {ada:,} (") and f"; this channel {channel:,} (" in lines[1]
    assert lines[2].startswith(f"• Last 30 days: you {ada:,} (")


# App Home -------------------------------------------------------------------------------------


async def test_app_home_shows_what_the_bot_does_the_default_assistant_and_the_persons_usage(
    start_bot, slack_double, openai_double
) -> None:
    bot = await start_bot()
    await bot.say(DM, "U0ADA", "hello there")
    async with bot.bot.store.transaction() as session:
        record = await session.scalar(select(TurnRecord))
    tokens = record.prompt_tokens + record.completion_tokens
    assert (await bot.deliver(slack_double.app_home_opened("U0ADA"))).status_code == 200
    home = slack_double.home_view("U0ADA")
    text = view_text(home)
    assert "/ask <question>" in text and "/imagine <prompt>" in text and "/assistant help" in text
    assert "*Default assistant:* Slack Assistant (model `gpt-4o-mini`)" in text
    assert f"*Your usage:* last 7 days {tokens:,} tokens; last 30 days {tokens:,} tokens" in text
    assert (await bot.deliver(slack_double.app_home_opened("U0BOB"))).status_code == 200
    assert "*Your usage:* last 7 days 0 tokens" in view_text(slack_double.home_view("U0BOB"))
