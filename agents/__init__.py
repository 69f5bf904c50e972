"""LangGraph flows, one graph per module."""

from .chat_graph import build_chat_graph
from .context import ChatContext
from .state import ChatState

__all__ = ["ChatContext", "ChatState", "build_chat_graph"]
