"""The audio family of the OpenAI double: POST /audio/transcriptions, hearing what tests say a file holds."""

from __future__ import annotations

from pathlib import Path

from .server import ApiCall, ApiError, JsonReply, Route, ServerCore

# The audio formats POST /audio/transcriptions accepts, told by the file name's extension.
TRANSCRIBABLE_FORMATS = frozenset({"flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm"})


class AudioFamily:
    """Transcribes a file to `transcripts[name]`, or "Transcript of <name>."."""

    name = "audio"

    def __init__(self, core: ServerCore) -> None:
        self._core = core
        self.reset()

    def routes(self) -> list[Route]:
        return [Route.of("POST", "/audio/transcriptions", self._create_transcription)]

    def reset(self) -> None:
        # File name -> what POST /audio/transcriptions hears in it.
        self.transcripts: dict[str, str] = {}

    def _create_transcription(self, call: ApiCall) -> JsonReply:
        name = getattr(call.body["file"], "filename", "")
        if Path(name).suffix.lstrip(".").lower() not in TRANSCRIBABLE_FORMATS:
            raise ApiError(
                400, f"Invalid file format. Supported formats: {sorted(TRANSCRIBABLE_FORMATS)}", param="file"
            )
        return JsonReply({"text": self.transcripts.get(name, f"Transcript of {name}.")})
