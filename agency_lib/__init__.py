"""Async Agency's scaffolding: timing, Gantt charts, the local service (search and a chat model), the tools, the agency.

What a notebook imports is listed in ``__all__``; the lesson code itself (the gather,
the Send fan-out, the semaphore) stays in the notebooks.
"""

from .agency import AgencyState, chat_model, editor, editor_messages, plan_queries, planner, writer, writer_messages
from .chat import ChatStats
from .plotting import compare, gantt
from .service import SearchService, current_service, start_service
from .timing import Recorder, Span, Summary
from .tools import (
    SOURCE_LATENCY,
    SOURCES,
    ServiceError,
    api_lookup,
    api_lookup_blocking,
    close_clients,
    kb_search,
    kb_search_blocking,
    make_client,
    search,
    search_blocking,
    simulated_search,
    simulated_search_blocking,
    web_search,
    web_search_blocking,
)

__version__ = "0.1.0"

__all__ = [
    # timing and charts
    "Recorder",
    "Span",
    "Summary",
    "gantt",
    "compare",
    # the local service and the tools
    "start_service",
    "current_service",
    "SearchService",
    "ChatStats",
    "ServiceError",
    "make_client",
    "close_clients",
    "SOURCES",
    "SOURCE_LATENCY",
    "web_search",
    "api_lookup",
    "kb_search",
    "search",
    "web_search_blocking",
    "api_lookup_blocking",
    "kb_search_blocking",
    "search_blocking",
    "simulated_search",
    "simulated_search_blocking",
    # the agency
    "AgencyState",
    "plan_queries",
    "planner",
    "writer",
    "editor",
    "chat_model",
    "writer_messages",
    "editor_messages",
]
