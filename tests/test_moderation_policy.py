"""The moderation policy, the pacing of answer checks, the moderation log and the settings behind them."""

from __future__ import annotations

import pytest

from bot.conversations.moderation import ModeratedReplyStream, ModerationPolicy, Moderator, Verdict
from bot.conversations.turn import ReplyCompleted, ReplyPart, Surface, TextDelta, Turn
from bot.errors import ConfigurationError
from bot.moderation_report import format_flags
from bot.openai_api.client import OpenAIClient
from bot.openai_api.models import ModerationResult
from bot.settings import Settings
from bot.store.moderation_log import Flag, ModerationLog
from bot.store.repositories import Store

TURN = Turn(
    event_id="Ev1",
    team_id="T0TEAM",
    channel_id="C0GENERAL",
    thread_key="1.0",
    surface=Surface.CHANNEL,
    user_id="U0ADA",
    user_name="Ada",
    text="hi",
    message_ts="1.0",
    reply_thread_ts="1.0",
)


def result(scores: dict[str, float], flagged: tuple[str, ...] = (), applied: dict[str, list[str]] | None = None):
    return ModerationResult(
        flagged=bool(flagged),
        categories={category: category in flagged for category in scores},
        category_scores=scores,
        category_applied_input_types=applied,
    )


def test_the_api_verdict_counts_and_thresholds_only_tighten_it() -> None:
    policy = ModerationPolicy(thresholds={"harassment": 0.4, "violence": 0.99})
    verdict = policy.judge(
        [
            result(
                {"violence": 0.8, "harassment": 0.1, "hate": 0.01},
                flagged=("violence",),
                applied={"violence": ["image"]},
            ),
            result({"violence": 0.2, "harassment": 0.45, "hate": 0.3}, applied={"harassment": ["text"]}),
        ]
    )
    assert verdict.categories == ("harassment", "violence")  # violence under its threshold still counts
    assert verdict.top_scores == {"violence": 0.8, "harassment": 0.45, "hate": 0.3}
    assert verdict.input_types == {"image", "text"}
    assert not policy.judge([result({"harassment": 0.39})]).flagged


def test_plain_words_and_what_is_refused() -> None:
    verdict = Verdict(categories=("harassment/threatening", "self-harm/intent", "violence/graphic"))
    assert verdict.in_plain_words() == "threats, intent of self-harm and graphic violence"
    blocking, allowing = ModerationPolicy(block_on_error=True), ModerationPolicy(block_on_error=False)
    assert blocking.refuses(Verdict(unavailable=True)) and not allowing.refuses(Verdict(unavailable=True))
    assert allowing.refuses(verdict) and not blocking.refuses(Verdict())


def test_unknown_threshold_categories_are_refused_at_start() -> None:
    with pytest.raises(ConfigurationError, match="MODERATION_THRESHOLDS names unknown categories: violense"):
        ModerationPolicy(thresholds={"violense": 0.5})


def test_moderation_settings_are_parsed_and_checked() -> None:
    base = {"slack_bot_token": "xoxb-x-1", "slack_signing_secret": "s-1", "openai_api_key": "sk-1"}
    settings = Settings(_env_file=None, **base, moderation="OUTPUT", moderation_thresholds='{"violence": "0.3"}')
    assert (settings.moderation, settings.moderation_thresholds) == ("output", {"violence": 0.3})
    assert (Settings(_env_file=None, **base).moderation, settings.moderation_on_error) == ("both", "block")
    for bad in ('{"violence": 1.5}', '{"violence": "high"}', "[0.5]"):
        with pytest.raises(ValueError, match="MODERATION_THRESHOLDS must"):
            Settings(_env_file=None, **base, moderation_thresholds=bad)


class RecordedReply:
    """The renderer's side of a reply stream: what reached it, in order."""

    def __init__(self) -> None:
        self.parts: list[ReplyPart] = []

    @property
    def reply_ts(self) -> str | None:
        return None

    async def send(self, part: ReplyPart) -> None:
        self.parts.append(part)

    async def notice(self, text: str) -> None:
        raise AssertionError("no notice expected")


async def test_answers_are_checked_at_most_once_per_update_and_only_new_text(openai_double, store) -> None:
    now = [0.0]
    inner = RecordedReply()
    async with OpenAIClient(api_key=openai_double.api_key, base_url=openai_double.base_url) as client:
        moderator = Moderator(client, ModerationPolicy(), ModerationLog(store))
        stream = ModeratedReplyStream(inner, moderator=moderator, turn=TURN, update_seconds=1.0, clock=lambda: now[0])
        for at, text in [(0.0, "One "), (0.3, "two "), (0.6, "three "), (1.2, "four")]:
            now[0] = at
            await stream.send(TextDelta(text))
        await stream.send(ReplyCompleted("One two three four and five."))
    checked = [request.body["input"] for request in openai_double.requests_to("POST", r"/moderations$")]
    assert checked == ["One ", "One two three four", "One two three four and five."]  # new text led by context
    assert inner.parts == [
        TextDelta("One "),
        TextDelta("two three four"),
        ReplyCompleted("One two three four and five."),
    ]


async def test_the_log_keeps_flags_newest_first_per_team(store: Store) -> None:
    moderation_log = ModerationLog(store)
    for team, text in [("T1", "first"), ("T2", None), ("T1", "third")]:
        await moderation_log.record(
            Flag(
                team_id=team,
                channel_id="C1",
                user_id="U1",
                direction="input",
                source="text",
                categories=("hate",),
                top_scores={"hate": 0.9},
                flagged_text=text,
            )
        )
    assert [event.flagged_text for event in await moderation_log.recent(limit=10, team_id="T1")] == ["third", "first"]
    latest = await moderation_log.recent(limit=2)
    assert [event.team_id for event in latest] == ["T1", "T2"]
    table = format_flags(latest).splitlines()
    assert len(table) == 4 and "hate 0.90" in table[2] and table[2].endswith("third")
