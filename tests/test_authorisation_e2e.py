"""End to end: who may see which profiles, bind a channel to one, and start afresh or forget a conversation.

Through `/assistant` commands and the forget button, signed as Slack sends them, on every backend.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from conftest import OPENAI_KEY
from support.commands import TEAM, click, ephemeral_texts, last_ephemeral, run_command
from support.model_view import server_memories
from support.workspace import ADA, BOB, BOT, CHANNEL

from bot.conversations.profiles import ProfileOrigin, ProfileSpec
from bot.store.channels import BackendMemory, ChannelStore
from bot.store.models import Conversation

OTHER_TEAM = "T0OTHER"  # another workspace the same deployment (and API organisation) serves
OWNER = "U0OLGA"  # a workspace owner who never wrote to the bot
ELSEWHERE = "C0ELSEWHERE"
NOT_YOURS = "Only the people who talked with me in this conversation, and admins, can start it afresh or forget it."


async def make_profile(bot: Any, name: str, *, team_id: str, instructions: str | None = None) -> str:
    """A profile made with `/assistant create` in a channel of ``team_id`` (on assistants: an API assistant)."""
    profile = await bot.bot.backend.profiles.create(
        ProfileSpec(name=name, model="gpt-4o", instructions=instructions or f"You are {name}.", tools=()),
        origin=ProfileOrigin(team_id=team_id, channel_id=ELSEWHERE, user_id=ADA),
    )
    return profile.id


def refused_binding(reference: str) -> str:
    return (
        f"“{reference}” is not one of this workspace's assistants (the default, one its channels use or one made "
        "here), so no channel here can use it. The bot's operator can allow it by adding its id to "
        "`ALLOWED_PROFILE_IDS`."
    )


async def changes(bot: Any) -> list[tuple[str, str, str | None, str | None]]:
    rows = await ChannelStore(bot.bot.store).assistant_changes(team_id=TEAM, channel_id=CHANNEL)
    return [(row.user_id, row.action, row.from_profile_id, row.to_profile_id) for row in rows]


async def memories(bot: Any, thread_key: str) -> list[BackendMemory]:
    conversation = await bot.bot.store.find_conversation(team_id=TEAM, channel_id=CHANNEL, thread_key=thread_key)
    assert conversation is not None, "the conversation is gone"
    return await ChannelStore(bot.bot.store).backend_states(conversation.id)


@pytest.fixture
def owner(slack_double: Any) -> str:
    slack_double.add_user(OWNER, name="olga", display_name="Olga", is_owner=True)
    return OWNER


# list -------------------------------------------------------------------------------------------


async def test_list_shows_people_only_their_workspaces_profiles_and_admins_every_one(
    start_bot, slack_double, openai_double, database_url, owner
) -> None:
    bot = await start_bot(database_url=database_url)
    ours = await make_profile(bot, "Pirate", team_id=TEAM)
    theirs = await make_profile(bot, "Rival", team_id=OTHER_TEAM, instructions="You are Rival. The merger is on.")
    default = (await bot.bot.backend.profiles.default()).id

    await run_command(bot, slack_double, "/assistant", "list", user=BOB)
    listed = last_ephemeral(slack_double, user=BOB)
    assert listed.startswith("*Assistants this workspace uses or made (2)*")
    assert f"`{ours}`" in listed and f"`{default}`" in listed
    assert "Rival" not in listed and theirs not in listed

    await run_command(bot, slack_double, "/assistant", "list", user=owner)
    own_part, _, others_part = last_ephemeral(slack_double, user=owner).partition("*Others on the API account (1)*")
    assert f"`{ours}`" in own_part and theirs not in own_part
    assert f"• *Rival* (`{theirs}`, model `gpt-4o`)" in others_part and "ALLOWED_PROFILE_IDS" in others_part


@pytest.mark.backends("assistants", reason="only the Assistants API has an organisation's assistants made elsewhere")
async def test_an_assistant_made_on_the_api_dashboard_is_not_listed_to_people_nor_bindable(
    start_bot, slack_double, openai_double, owner
) -> None:
    bot = await start_bot()
    async with httpx.AsyncClient(base_url=openai_double.base_url) as api:
        made = await api.post(
            "/assistants",
            json={"model": "gpt-4o", "name": "Payroll", "instructions": "Salaries: ..."},
            headers={"Authorization": f"Bearer {OPENAI_KEY}", "OpenAI-Beta": "assistants=v2"},
        )
    payroll = made.raise_for_status().json()["id"]
    await run_command(bot, slack_double, "/assistant", "list", user=BOB)
    assert "Payroll" not in last_ephemeral(slack_double, user=BOB)
    await run_command(bot, slack_double, "/assistant", "list", user=owner)
    assert f"`{payroll}`" in last_ephemeral(slack_double, user=owner).partition("*Others on the API account")[2]
    await run_command(bot, slack_double, "/assistant", f"use {payroll}", user=owner)
    assert last_ephemeral(slack_double, user=owner) == refused_binding(payroll)
    assert await bot.bot.store.channel_profile(team_id=TEAM, channel_id=CHANNEL) is None


# use --------------------------------------------------------------------------------------------


async def test_admins_bind_only_the_workspaces_profiles_or_those_the_operator_allows(
    start_bot, slack_double, openai_double, backend
) -> None:
    # The allowed profile's id exists only once it is made: a first bot makes them, a second one is configured.
    maker = await start_bot()
    theirs = await make_profile(maker, "Rival", team_id=OTHER_TEAM)
    allowed = await make_profile(maker, "Shared", team_id=OTHER_TEAM, instructions="You are the shared helper.")
    twin_ours = await make_profile(maker, "Twin", team_id=TEAM)
    await make_profile(maker, "Twin", team_id=OTHER_TEAM)
    bot = await start_bot(admin_user_ids=ADA, allowed_profile_ids=f"{allowed}, asst_not_there")

    for reference in (theirs, "Rival"):
        await run_command(bot, slack_double, "/assistant", f"use {reference}", user=ADA)
        assert last_ephemeral(slack_double, user=ADA) == refused_binding(reference)
    assert await changes(bot) == []
    assert await bot.bot.store.channel_profile(team_id=TEAM, channel_id=CHANNEL) is None

    # A name another workspace's profile shares is no ambiguity: only this workspace's can be meant.
    await run_command(bot, slack_double, "/assistant", "use twin", user=ADA)
    assert last_ephemeral(slack_double, user=ADA).startswith(f"This channel now uses *Twin* (`{twin_ours}`")

    await run_command(bot, slack_double, "/assistant", f"use {allowed}", user=ADA)
    assert last_ephemeral(slack_double, user=ADA).startswith(f"This channel now uses *Shared* (`{allowed}`")
    await bot.say(CHANNEL, BOB, f"<@{BOT}> hello")
    [*_, newest] = openai_double.model_inputs()
    assert newest[0] == ("system", "You are the shared helper.")
    # Now a channel here uses it, people here see it, and `show` tells them what it is told.
    await run_command(bot, slack_double, "/assistant", "list", user=BOB)
    assert f"`{allowed}`" in last_ephemeral(slack_double, user=BOB) and theirs not in last_ephemeral(
        slack_double, user=BOB
    )
    await run_command(bot, slack_double, "/assistant", "show", user=BOB)
    assert "Instructions: You are the shared helper." in last_ephemeral(slack_double, user=BOB)


# new and forget ---------------------------------------------------------------------------------


async def test_only_the_conversations_people_or_admins_start_it_afresh_or_forget_it(
    start_bot, slack_double, openai_double, backend, database_url, owner
) -> None:
    bot = await start_bot(database_url=database_url)
    root = await bot.say(CHANNEL, ADA, f"<@{BOT}> my secret plan is to leave in May")
    [memory] = await memories(bot, root)
    on_server = server_memories(openai_double, backend)

    # Bob is in the channel but never wrote to the bot in this conversation.
    await run_command(bot, slack_double, "/assistant", "new", user=BOB)
    assert last_ephemeral(slack_double, user=BOB) == NOT_YOURS
    await run_command(bot, slack_double, "/assistant", "forget", user=BOB)
    assert ephemeral_texts(slack_double, user=BOB) == [NOT_YOURS, NOT_YOURS]
    assert all("blocks" not in message for message in slack_double.ephemeral(CHANNEL, BOB))  # no button offered
    assert await memories(bot, root) == [memory]

    # Ada's question, with its button, clicked by Bob: the click is checked too.
    await run_command(bot, slack_double, "/assistant", "forget", user=ADA)
    question = slack_double.ephemeral(CHANNEL, ADA)[-1]
    confirm = next(e for e in question["blocks"][1]["elements"] if e["action_id"] == "forget_confirm")
    await click(bot, slack_double, action_id="forget_confirm", value=confirm["value"], message=question, user=BOB)
    assert last_ephemeral(slack_double, user=BOB) == NOT_YOURS
    assert await memories(bot, root) == [memory]
    assert openai_double.requests_to("DELETE", r".") == [] and server_memories(openai_double, backend) == on_server

    # Once Bob writes in it, it is his conversation too.
    await bot.say(CHANNEL, BOB, "and mine is to stay", thread_ts=root)
    await run_command(bot, slack_double, "/assistant", "new", user=BOB)
    assert last_ephemeral(slack_double, user=BOB).startswith(
        "Done: the next message in this conversation starts afresh"
    )

    # A workspace owner may forget any conversation.
    await click(bot, slack_double, action_id="forget_confirm", value=confirm["value"], message=question, user=owner)
    assert last_ephemeral(slack_double, user=owner).startswith("Forgotten: deleted 1 conversation memory,")
    async with bot.bot.store.transaction() as session:
        assert await session.get(Conversation, int(confirm["value"])) is None
