"""The Web API methods the bot calls, answered as Slack answers them.

Each runs under the local Slack's lock, on the state it is given; what the bot posted is
kept there so tests (and the shell) can read it back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from bot.devtools.local_slack.identity import (
    APP_ID,
    AUTH_TEST,
    BOT_ID,
    BOT_USER_ID,
    SCOPES,
    TEAM_ID,
    USER_TZ,
)
from bot.devtools.local_slack.state import Params, Reply, State, error, ok, with_block_ids

VIEW_METHODS = ("views.open", "views.update", "views.push", "views.publish")


class WebApi:
    """Slack's Web API over ``state``; ``base_url`` is where upload URLs point."""

    def __init__(self, state: State, base_url: str) -> None:
        self.state = state
        self.base_url = base_url
        self._methods: dict[str, Callable[[Params], Reply]] = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._connections_open,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.getPermalink": self._get_permalink,
            **{name: self._view for name in VIEW_METHODS},
            "conversations.join": self._join,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "users.info": self._users_info,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
        }

    def answer(self, method: str, params: Params) -> Reply:
        handler = self._methods.get(method)
        return handler(params) if handler else error("unknown_method")

    def upload(self, file_id: str, data: bytes) -> Reply:
        """The bytes posted to an upload URL that files.getUploadURLExternal handed out."""
        upload = self.state.uploads.get(file_id)
        if upload is None:
            return Reply(404)
        upload["data"] = data
        return Reply(body=f"OK - {len(data)}".encode(), content_type="text/plain")

    # -- auth, chat ------------------------------------------------------------------

    def _auth_test(self, params: Params) -> Reply:
        body = json.dumps(AUTH_TEST).encode()
        return Reply(body=body, headers=(("x-oauth-scopes", SCOPES),), answer=dict(AUTH_TEST))

    def _connections_open(self, params: Params) -> Reply:
        """Socket Mode: where to connect, when a test runs a Socket Mode server."""
        if self.state.socket_url is None:
            return error("invalid_auth")
        return ok(url=self.state.socket_url)

    def _post_message(self, params: Params) -> Reply:
        channel = params.get("channel")
        if not channel:
            return error("channel_not_found")
        if channel in self.state.outside:
            return error("not_in_channel")
        if isinstance(params.get("blocks"), str):
            return error("invalid_blocks_format")
        if not any(params.get(name) for name in ("text", "blocks", "attachments")):
            return error("no_text")
        ts = self.state.next_ts()
        message: Params = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "ts": ts,
            "text": params.get("text", ""),
            "blocks": with_block_ids(params.get("blocks") or []),
        }
        if params.get("thread_ts"):
            message["thread_ts"] = params["thread_ts"]
            if _flag(params.get("reply_broadcast")):
                # Like Slack: a reply also sent to the channel is one message, in the thread,
                # of subtype thread_broadcast, and shown in the channel's history too.
                message["subtype"] = "thread_broadcast"
        if params.get("metadata"):
            message["metadata"] = params["metadata"]
        self.state.messages.setdefault(channel, {})[ts] = message
        return ok(channel=channel, ts=ts, message=message)

    def _update(self, params: Params) -> Reply:
        channel, ts = params.get("channel"), params.get("ts")
        if channel in self.state.outside:
            return error("not_in_channel")
        message = self.state.messages.get(channel or "", {}).get(ts or "")
        if message is None:
            return error("message_not_found")
        if isinstance(params.get("blocks"), str):
            return error("invalid_blocks_format")
        # Like Slack, fields left out of the update keep their previous value.
        if params.get("text") is not None:
            message["text"] = params["text"]
        if params.get("blocks") is not None:
            message["blocks"] = with_block_ids(params["blocks"])
        return ok(channel=channel, ts=ts, text=message["text"], message=message)

    def _post_ephemeral(self, params: Params) -> Reply:
        if not params.get("channel"):
            return error("channel_not_found")
        return ok(message_ts=self.state.next_ts())

    def _get_permalink(self, params: Params) -> Reply:
        channel, ts = params.get("channel", ""), params.get("message_ts", "")
        permalink = f"https://example.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        return ok(channel=channel, permalink=permalink)

    # -- conversations ---------------------------------------------------------------

    def _replies(self, params: Params) -> Reply:
        """A thread: its parent and replies, oldest first; metadata only when asked for."""
        channel, parent = str(params.get("channel") or ""), str(params.get("ts") or "")
        if channel in self.state.outside:
            return error("not_in_channel")
        stored = self.state.messages.get(channel, {})
        if parent not in stored:
            return error("thread_not_found")
        oldest = float(params.get("oldest") or 0)
        with_metadata = _flag(params.get("include_all_metadata"))
        found = [
            {k: v for k, v in m.items() if k != "metadata" or with_metadata}
            for ts, m in sorted(stored.items())
            if (ts == parent or m.get("thread_ts") == parent) and float(ts) >= oldest
        ]
        return ok(messages=found, has_more=False)

    def _history(self, params: Params) -> Reply:
        """Top-level messages and, like Slack, replies that were also sent to the channel
        (thread_broadcast); metadata only with include_all_metadata. Newest first."""
        channel = str(params.get("channel") or "")
        if channel in self.state.outside:
            return error("not_in_channel")
        oldest = float(params.get("oldest") or 0)
        with_metadata = _flag(params.get("include_all_metadata"))
        found = []
        for ts, message in sorted(self.state.messages.get(channel, {}).items(), reverse=True):
            broadcast = message.get("subtype") == "thread_broadcast"
            if float(ts) < oldest or (message.get("thread_ts") not in (None, ts) and not broadcast):
                continue
            found.append({k: v for k, v in message.items() if k != "metadata" or with_metadata})
        limit = int(params.get("limit") or 100)
        return ok(messages=found[:limit], has_more=len(found) > limit)

    def _join(self, params: Params) -> Reply:
        channel = params.get("channel")
        if not channel:
            return error("channel_not_found")
        private = self.state.outside.get(channel)
        if private:
            return error("method_not_supported_for_channel_type")
        info = {
            "id": channel,
            "name": channel.lower(),
            "is_channel": True,
            "is_private": False,
            "is_member": True,
            "is_archived": False,
        }
        if private is None:
            return ok(
                channel=info,
                warning="already_in_channel",
                response_metadata={"warnings": ["already_in_channel"]},
            )
        del self.state.outside[channel]
        return ok(channel=info)

    # -- views, users, files -----------------------------------------------------------

    def _view(self, params: Params) -> Reply:
        submitted = params.get("view")
        if not isinstance(submitted, dict):
            return error("invalid_arguments")
        # views.update keeps the id of the view it replaces.
        view_id = params.get("view_id") or f"V{self.state.next_id():010d}"
        view = {
            "id": view_id,
            "team_id": TEAM_ID,
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{view_id}",
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            "clear_on_close": False,
            "notify_on_close": False,
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": APP_ID,
            "app_installed_team_id": TEAM_ID,
            "bot_id": BOT_ID,
            **submitted,
            "blocks": with_block_ids(submitted.get("blocks", [])),
        }
        return ok(view=view)

    def _users_info(self, params: Params) -> Reply:
        user_id = params.get("user")
        if not user_id:
            return error("user_not_found")
        name = user_id.lower()
        user = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "real_name": name,
            "deleted": False,
            "tz": USER_TZ,
            "tz_label": "Pacific Standard Time",
            "tz_offset": -28800,
            "is_admin": user_id in self.state.admins,
            "is_owner": False,
            "is_bot": False,
            "profile": {"real_name": name, "display_name": name},
        }
        return ok(user=user)

    def _get_upload_url(self, params: Params) -> Reply:
        if not params.get("filename") or not params.get("length"):
            return error("invalid_arguments")
        file_id = f"F{self.state.next_id():010d}"
        self.state.uploads[file_id] = {"name": params["filename"], "data": b""}
        return ok(upload_url=f"{self.base_url}/upload/{file_id}", file_id=file_id)

    def _complete_upload(self, params: Params) -> Reply:
        requested = params.get("files")
        if not isinstance(requested, list):
            return error("invalid_arguments")
        files = []
        for item in requested:
            upload = self.state.uploads.get(item.get("id", ""))
            if upload is None:
                return error("file_not_found")
            files.append(
                {
                    "id": item["id"],
                    "name": upload["name"],
                    "title": item.get("title") or upload["name"],
                    "size": len(upload["data"]),
                }
            )
        return ok(files=files)


def _flag(value: object) -> bool:
    return str(value or "").lower() in ("1", "true")
