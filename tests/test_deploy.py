"""What ships for deployment: compose.yaml and its proxy, the Grafana dashboard, the Dockerfile's stages."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from bot.metrics import BotMetrics
from bot.settings import Settings
from bot.store.activity import Activity
from bot.store.db import create_engine, migrate, session_factory
from bot.store.models import Conversation, Feedback, ModerationEvent, TurnRecord
from bot.store.repositories import Store

ROOT = Path(__file__).resolve().parents[1]
BOT_SERVICES = {"bot-1", "bot-2"}


# ---------------------------------------------------------------- compose.yaml


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def interpolated(value: str, **environment: str) -> str:
    """The value with compose's ${NAME}, ${NAME:-default} and ${NAME:?error} filled in from environment."""
    return re.sub(r"\$\{(\w+)(?::?[-?][^}]*)?\}", lambda match: environment[match.group(1)], value)


def test_compose_runs_two_replicas_behind_one_port_with_postgresql() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "proxy"} | BOT_SERVICES
    published = {name: service["ports"] for name, service in services.items() if "ports" in service}
    assert list(published) == ["proxy"] and len(published["proxy"]) == 1
    assert published["proxy"][0].endswith(":8080")
    for name in BOT_SERVICES:
        bot = services[name]
        assert bot["build"] == "."
        assert bot["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert bot["environment"]["LOG_FORMAT"] == "json"
        # The replicas share one PostgreSQL database: the compose service's own.
        database = make_url(interpolated(bot["environment"]["DATABASE_URL"], POSTGRES_PASSWORD="pw"))
        assert database.password == "pw"
        assert (database.get_backend_name(), database.host, database.database) == ("postgresql", "postgres", "bot")
        assert database.username == services["postgres"]["environment"]["POSTGRES_USER"]
        assert database.database == services["postgres"]["environment"]["POSTGRES_DB"]
        # Behind a load balancer the bot must serve HTTP: no Socket Mode token is set here.
        assert "SLACK_APP_TOKEN" not in bot["environment"]
    assert services["bot-1"] == services["bot-2"]
    assert "healthcheck" in services["postgres"]
    assert {dependency: "service_healthy" for dependency in BOT_SERVICES} == {
        name: condition["condition"] for name, condition in services["proxy"]["depends_on"].items()
    }


def test_compose_sets_only_real_settings_for_the_bot() -> None:
    settings = {name.upper() for name in Settings.model_fields}
    for name in BOT_SERVICES:
        environment = compose()["services"][name]["environment"]
        assert set(environment) - settings == set(), f"{name} sets names that are no settings"


def test_the_proxy_sends_slack_and_the_probes_to_both_replicas_and_keeps_metrics_inside() -> None:
    services = compose()["services"]
    [mount] = services["proxy"]["volumes"]
    source, target, _ = mount.split(":")
    assert target == "/etc/nginx/conf.d/default.conf"
    config = (ROOT / source).read_text(encoding="utf-8")
    ports = {services[name]["environment"]["PORT"] for name in BOT_SERVICES}
    upstream = re.search(r"upstream bot \{(.*?)\}", config, re.S)
    assert upstream is not None
    servers = set(re.findall(r"server (\S+?):(\d+)", upstream.group(1)))
    assert servers == {(name, port) for name in BOT_SERVICES for port in ports}
    assert re.search(r"listen 8080;", config)
    for location in ("/slack/", "= /healthz", "= /readyz"):
        assert re.search(rf"location {re.escape(location)} \{{\s*proxy_pass http://bot;", config), location
    assert "/metrics" not in re.findall(r"location ([^{]+)\{", config)
    assert re.search(r"location / \{\s*return 404;", config)


# ---------------------------------------------------------------- Grafana dashboard


async def exported_metrics(sqlite_url: str) -> dict[str, set[str]]:
    """Each sample name a bot's /metrics shows, with its label names, once every metric has a sample."""
    engine = create_engine(sqlite_url)
    try:
        await migrate(engine)
        store = Store(session_factory(engine))
        async with store.transaction() as session:
            conversation = Conversation(team_id="T1", channel_id="C1", thread_key="1.0", surface="channel")
            session.add(conversation)
            await session.flush()
            turn = TurnRecord(
                team_id="T1",
                event_id="Ev1",
                conversation_id=conversation.id,
                channel_id="C1",
                user_id="U1",
                message_ts="1.0",
                payload={},
                status="answered",
                prompt_tokens=3,
                completion_tokens=4,
            )
            session.add(turn)
            await session.flush()
            session.add(
                ModerationEvent(
                    team_id="T1",
                    channel_id="C1",
                    direction="input",
                    source="text",
                    categories=["violence"],
                    top_scores={"violence": 0.9},
                )
            )
            session.add(Feedback(team_id="T1", channel_id="C1", turn_id=turn.id, user_id="U1", value="good"))
        metrics = BotMetrics(backend="responses")
        metrics.read_activity_from(Activity(store))
        metrics.first_text(surface="channel", seconds=0.5)
        metrics.completed(surface="channel", seconds=1.5)
        metrics.request_finished(route="responses", status=500, seconds=0.2)
        metrics.lease_taken_over()
        text = (await metrics.exposition()).decode()
    finally:
        await engine.dispose()
    exported: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            exported.setdefault(sample.name, set()).update(sample.labels)
    return exported


def dashboard_queries() -> list[str]:
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text(encoding="utf-8"))
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(queries) >= 10
    return queries


def labels_used(query: str) -> set[str]:
    """Label names a PromQL query groups by or matches on."""
    grouped = {
        label.strip() for clause in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", query) for label in clause.split(",")
    }
    matched = {
        label for selector in re.findall(r"\{([^}]*)\}", query) for label in re.findall(r"(\w+)\s*[!=]~?", selector)
    }
    return (grouped | matched) - {""}


async def test_the_dashboard_asks_only_for_metrics_and_labels_the_bot_exports(sqlite_url: str) -> None:
    exported = await exported_metrics(sqlite_url)
    assert all(name.startswith("slack_assistant_") or name.startswith("process_") for name in exported)
    used_names: set[str] = set()
    for query in dashboard_queries():
        names = set(re.findall(r"\bslack_assistant_\w+", query))
        assert names, f"query reads none of the bot's metrics: {query}"
        assert names <= set(exported), f"not exported: {names - set(exported)} in {query}"
        labels = set().union(*(exported[name] for name in names))
        assert labels_used(query) <= labels, f"labels {labels_used(query) - labels} not on {names}"
        used_names |= names
    # Every family the bot exports has a panel (a histogram through its buckets, a counter through _total).
    families = {
        re.sub(r"_(bucket|count|sum|total|created)$", "", name) for name in exported if "slack_assistant" in name
    }
    shown = {re.sub(r"_(bucket|count|sum|total)$", "", name) for name in used_names}
    assert families - shown == set(), "metrics without a panel"


def test_the_bot_registers_nothing_on_the_global_registry() -> None:
    BotMetrics(backend="chat")
    assert b"slack_assistant" not in generate_latest(REGISTRY)


# ---------------------------------------------------------------- Dockerfile


def dockerfile_stages() -> list[str]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    return re.split(r"^(?=FROM )", text, flags=re.M)[1:]


def test_the_image_is_built_in_one_stage_and_runs_from_a_clean_one() -> None:
    build, final = dockerfile_stages()
    assert re.match(r"FROM python:3\.12-slim AS build\b", build)
    assert re.search(r"^RUN pip install --no-cache-dir \.$", build, re.M)
    assert re.match(r"FROM python:3\.12-slim\s*$", final.splitlines()[0])
    # Only the installed environment comes over: no sources, no build tools, no pip (or its cache) run there.
    assert re.findall(r"^COPY .*", final, re.M) == ["COPY --from=build /opt/venv /opt/venv"]
    assert not re.search(r"\b(pip|apt-get|gcc|build-essential)\b", final.replace("PIP_", ""))
    assert re.search(r"^USER 10001:10001$", final, re.M)
    assert re.search(r"^HEALTHCHECK\b.*\n.*urllib\.request.*127\.0\.0\.1.*/healthz", final, re.M)
    assert re.search(r'^CMD \["python", "-m", "bot", "run"\]$', final, re.M)
