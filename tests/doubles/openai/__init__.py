"""A stateful OpenAI API server on 127.0.0.1, one module per API family, whose traffic is checked against the spec."""

from .double import OpenAIDouble
from .images import GENERATED_IMAGE_PNG
from .script import ScriptedAnswer, ScriptedRun
from .server import SERVER_SHAPES, RecordedRequest

__all__ = ["GENERATED_IMAGE_PNG", "SERVER_SHAPES", "OpenAIDouble", "RecordedRequest", "ScriptedAnswer", "ScriptedRun"]
