"""The agent API: runs, LLM calls, tool calls, memory, retrieval and sub-agents, their
handles, and the per-run roll-ups and budget."""

from .api import (
    GENAI_SEMCONV_VERSION,
    identity,
    llm_call,
    memory,
    retrieval,
    start_trace,
    sub_agent,
    tool_call,
)
from .handles import LLMCall, Memory, Retrieval, Run, Step, ToolCall, get_current_step
from .rollup import RunBudget
from .spec import StepSpec

__all__ = [
    "GENAI_SEMCONV_VERSION",
    "LLMCall",
    "Memory",
    "Retrieval",
    "Run",
    "RunBudget",
    "Step",
    "StepSpec",
    "ToolCall",
    "get_current_step",
    "identity",
    "llm_call",
    "memory",
    "retrieval",
    "start_trace",
    "sub_agent",
    "tool_call",
]
