"""OAuth v2 on the double: a person approves the install in Slack, the app exchanges the code at oauth.v2.access
(and, with token rotation on, a refresh token for a new bot token); uninstalling revokes the workspace's tokens.

oauth.v2.access authenticates with the app's client id and secret (HTTP Basic, or form fields), not a token,
so the server answers it before looking a token up.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .methods import Params, SlackError

if TYPE_CHECKING:
    from .workspace import Workspace

DEFAULT_CLIENT_ID = "1111111111.2222222222"
DEFAULT_CLIENT_SECRET = "double-oauth-client-secret-7d3b"


@dataclass(frozen=True)
class Approval:
    """What a person approved in Slack's install page: for which workspace, by whom, which scopes."""

    team_id: str
    user_id: str
    scopes: tuple[str, ...]


@dataclass
class OAuthApp:
    """The app's credentials and what its installs issued; `token_rotation` plays the app setting of that name."""

    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    token_rotation: bool = False
    token_lifetime_seconds: int = 43200
    codes: dict[str, Approval] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # refresh token -> team id
    # Bot tokens replaced by a refresh: Slack keeps them working until they expire, which the double never
    # plays, so a client still holding one goes on working.
    earlier_tokens: dict[str, str] = field(default_factory=dict)  # token -> team id
    granted_scopes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # team id -> bot scopes


def approve(app: OAuthApp, ws: Workspace, *, user_id: str, scopes: tuple[str, ...]) -> str:
    """The person approves the install: Slack redirects their browser with this one-time code."""
    code = f"{ws.team_id}.{secrets.token_hex(8)}"
    app.codes[code] = Approval(ws.team_id, user_id, scopes)
    return code


def access(
    app: OAuthApp, workspaces: dict[str, Workspace], params: Params, authorization: str, *, api_app_id: str
) -> dict[str, Any]:
    """oauth.v2.access: a code (or, with rotation, a refresh token) for the workspace's bot token."""
    client_id, client_secret = _credentials(params, authorization)
    if client_id != app.client_id:
        raise SlackError("invalid_client_id")
    if client_secret != app.client_secret:
        raise SlackError("bad_client_secret")
    if params.text("grant_type") == "refresh_token":
        team_id = app.refresh_tokens.get(params.text("refresh_token") or "")
        if team_id is None or team_id not in workspaces:
            raise SlackError("invalid_refresh_token")
        ws = workspaces[team_id]
        app.earlier_tokens[ws.bot_token] = team_id
        ws.bot_token = f"xoxe.xoxb-{team_id}-{secrets.token_hex(8)}"
        return _bot_grant(app, ws, scopes=app.granted_scopes.get(team_id, ()), api_app_id=api_app_id)
    approval = app.codes.pop(params.text("code") or "", None)
    if approval is None:
        raise SlackError("invalid_code")
    ws = workspaces[approval.team_id]
    app.granted_scopes[ws.team_id] = approval.scopes
    grant = _bot_grant(app, ws, scopes=approval.scopes, api_app_id=api_app_id)
    return grant | {"authed_user": {"id": approval.user_id}}


def _bot_grant(app: OAuthApp, ws: Workspace, *, scopes: tuple[str, ...], api_app_id: str) -> dict[str, Any]:
    grant: dict[str, Any] = {
        "app_id": api_app_id,
        "scope": ",".join(scopes),
        "token_type": "bot",
        "access_token": ws.bot_token,
        "bot_user_id": ws.bot_user_id,
        "team": {"id": ws.team_id, "name": ws.name},
        "is_enterprise_install": False,
    }
    if app.token_rotation:
        refresh = f"xoxe-1-{secrets.token_hex(12)}"
        app.refresh_tokens = {token: team for token, team in app.refresh_tokens.items() if team != ws.team_id}
        app.refresh_tokens[refresh] = ws.team_id
        grant |= {"refresh_token": refresh, "expires_in": app.token_lifetime_seconds}
    return grant


def revoke(app: OAuthApp, ws: Workspace) -> list[dict[str, Any]]:
    """The workspace uninstalls the app: its tokens stop working, and the app gets these two events."""
    ws.bot_token = f"revoked-{secrets.token_hex(8)}"  # no client holds it, so every call is invalid_auth
    app.refresh_tokens = {token: team for token, team in app.refresh_tokens.items() if team != ws.team_id}
    app.granted_scopes.pop(ws.team_id, None)
    app.earlier_tokens = {token: team for token, team in app.earlier_tokens.items() if team != ws.team_id}
    return [
        {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": [ws.bot_user_id]}},
        {"type": "app_uninstalled"},
    ]


def workspace_of(app: OAuthApp, workspaces: dict[str, Workspace], token: str | None) -> Workspace | None:
    """The workspace whose current bot token, or earlier one not yet expired, this is."""
    current = next((ws for ws in workspaces.values() if ws.bot_token == token), None)
    return current or workspaces.get(app.earlier_tokens.get(token or "", ""))


def _credentials(params: Params, authorization: str) -> tuple[str | None, str | None]:
    if authorization.startswith("Basic "):
        try:
            client_id, _, client_secret = base64.b64decode(authorization[6:]).decode().partition(":")
        except ValueError:
            raise SlackError("invalid_client_id") from None
        return client_id, client_secret
    return params.text("client_id"), params.text("client_secret")
