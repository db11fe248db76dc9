"""The OpenAI-compatible surface of the service: request validation and response shapes.

Pure functions, so every rule (what makes a request malformed, what the answer looks like) is
tested without a server. The HTTP layer maps :class:`BadRequest` to a 400 with the message.

The ``model`` field selects the routing method: ``symbolic-moe`` (recruit.k experts),
``symbolic-moe-k<N>`` (N experts), a baseline (``majority-vote``, ``single``,
``self-consistency``, ``task-level``, ``random``, ``moa``, ``self-moa``), or a rival router (``avengers``,
``knn``: recruit.k experts by question embedding, recruit.<name>.combine). An optional ``skillmoe``
object carries ``route_only`` (skills, recruited experts and cost estimate, no answer generation),
``choices`` (options of a multiple-choice question) and ``answer_type`` (auto, choice, math).

Request fields of the OpenAI spec are honoured (``temperature``, ``top_p``, ``max_tokens`` /
``max_completion_tokens`` and ``seed`` set the sampling of the generation that writes the reply;
``stop`` cuts that reply before the first stop string; ``n`` asks for several replies, each an
aggregation of its own over the same experts' answers; ``stream`` and ``stream_options.include_usage``
the shape of the reply), ignored where they cannot change the answer (``user``, ``metadata``, ...), or
refused with a 400 naming the field where the service cannot do what they ask (``tools``,
``logprobs``, ``response_format`` other than text, ...). A field outside the spec is refused, as
OpenAI's API does.

Conversations: skills are inferred from the last user message (the question); the system (or
developer) messages and the earlier turns are the question's context, which the experts and the
aggregator read as a transcript above it (:attr:`Job.prompt`).
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from dataclasses import dataclass

from skillmoe_ray.data.instances import invalid_text
from skillmoe_ray.errors import SkillMoEError
from skillmoe_ray.method.runner import ReplySampling
from skillmoe_ray.registry import METHODS

# model name -> method for every method the registry marks servable (symbolic_moe has names of its own, below)
BASELINES = {name.replace("_", "-"): name for name in METHODS.with_capability("servable")
             if name != "symbolic_moe"}
MAX_K = 8
_K_MODEL = re.compile(r"^symbolic-moe-k(\d+)$")


# Spec fields that cannot change the answer: accepted and ignored.
IGNORED = frozenset({"user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key",
                     "parallel_tool_calls"})
# Spec fields the service cannot honour -> (the values that ask for nothing, why they are refused).
REFUSED: dict[str, tuple[tuple, str]] = {
    "tools": ((None, []), "tool calls are not supported"),
    "tool_choice": ((None, "none"), "tool calls are not supported"),
    "functions": ((None, []), "function calls are not supported"),
    "function_call": ((None, "none"), "function calls are not supported"),
    "logprobs": ((None, False), "log probabilities are not returned"),
    "top_logprobs": ((None, 0), "log probabilities are not returned"),
    "response_format": ((None, {"type": "text"}), "only text replies are supported"),
    "frequency_penalty": ((None, 0), "penalties are not supported"),
    "presence_penalty": ((None, 0), "penalties are not supported"),
    "logit_bias": ((None, {}), "logit biases are not supported"),
    "modalities": ((None, ["text"]), "only text replies are supported"),
    "audio": ((None,), "audio replies are not supported"),
    "prediction": ((None,), "predicted outputs are not supported"),
    "web_search_options": ((None,), "web search is not supported"),
    "reasoning_effort": ((None,), "the experts' reasoning effort is not set per request"),
    "verbosity": ((None,), "the reply's verbosity is not set per request"),
}
HONOURED = ("model", "messages", "skillmoe", "stream", "stream_options", "n", "temperature", "top_p",
            "max_tokens", "max_completion_tokens", "seed", "stop")
# OpenAI's limit on stop sequences per request
MAX_STOP = 4
# role of a message -> its name in the transcript the experts read
ROLES = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant"}
# Keys of a message besides role and content: accepted when they ask for nothing (name is ignored).
MESSAGE_EXTRAS = {"name": None, "refusal": (None,), "tool_calls": (None, []), "audio": (None,)}


class BadRequest(SkillMoEError):
    """A request the service cannot accept (HTTP 400).

    The message says what is wrong, ``param`` which field.
    """

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Job:
    """One validated question to answer (or only route)."""

    request_id: str
    model: str
    method: str
    k: int
    question: str  # the last user message: skills are inferred from it
    choices: tuple[str, ...] | None = None
    answer_type: str = "auto"
    route_only: bool = False
    sampling: ReplySampling = ReplySampling()
    stream: bool = False
    include_usage: bool = False
    context: tuple[tuple[str, str], ...] = ()  # (role, text) of the system messages and earlier turns
    stop: tuple[str, ...] = ()
    n: int = 1

    @property
    def prompt(self) -> str:
        """What the experts and the aggregator answer: the question, below its conversation if any."""
        if not self.context:
            return self.question
        turns = [f"{ROLES[role]}: {text}" for role, text in self.context]
        return "\n\n".join([*turns, f"User: {self.question}"])


def model_names(default_k: int) -> list[str]:
    """Every value the ``model`` field accepts."""
    return ["symbolic-moe", *(f"symbolic-moe-k{k}" for k in range(1, MAX_K + 1)), *BASELINES]


def resolve_model(name: str, default_k: int) -> tuple[str, int]:
    """(method, k) for a model name; BadRequest listing the valid names otherwise."""
    if name == "symbolic-moe":
        return "symbolic_moe", default_k
    match = _K_MODEL.match(name)
    if match and 1 <= int(match.group(1)) <= MAX_K:
        return "symbolic_moe", int(match.group(1))
    if name in BASELINES:
        return BASELINES[name], default_k
    raise BadRequest(f"unknown model {name!r}; valid models: {', '.join(model_names(default_k))} "
                     "(see GET /v1/models)", "model")


def _conversation(messages: object) -> tuple[str, tuple[tuple[str, str], ...]]:
    """(the last user message's text, the (role, text) turns before it); BadRequest when malformed."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' is required: a non-empty list of "
                         "{\"role\": ..., \"content\": ...} objects", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise BadRequest(f"messages[{i}] must be an object with 'role' and 'content'", "messages")
        if message["role"] not in ROLES:
            raise BadRequest(f"messages[{i}] has role {message['role']!r}; supported roles: "
                             f"{', '.join(ROLES)} (tool messages are not supported)", "messages")
        extra = next((k for k in message if k not in ("role", "content") and (
            k not in MESSAGE_EXTRAS or (MESSAGE_EXTRAS[k] and message[k] not in MESSAGE_EXTRAS[k]))), None)
        if extra:
            raise BadRequest(f"messages[{i}].{extra} is not supported (leave it out)", "messages")
    if not any(m["role"] == "user" for m in messages):
        raise BadRequest("'messages' has no user message: the question is the last message with role 'user'",
                         "messages")
    if messages[-1]["role"] != "user":
        raise BadRequest("the last message must be the user's question (a trailing assistant or system "
                         "message is not supported)", "messages")
    question = _content(messages[-1]["content"], len(messages) - 1)
    if not question.strip():
        raise BadRequest("the question (the last user message) is empty", "messages")
    context = tuple((m["role"], _content(m["content"], i).strip()) for i, m in enumerate(messages[:-1]))
    return question.strip(), tuple((role, text) for role, text in context if text)


def _content(content: object, index: int) -> str:
    """The text of a message's content: a string, or OpenAI's list of text parts (null: empty)."""
    if content is None:
        return ""
    if isinstance(content, list):
        content = "".join(_text_part(part, i, index) for i, part in enumerate(content))
    if not isinstance(content, str):
        raise BadRequest(f"messages[{index}].content must be a string or a list of text parts", "messages")
    return content


def _text_part(part: object, index: int, message: int) -> str:
    """The text of one OpenAI content part; only text parts are understood."""
    if (not isinstance(part, dict) or part.get("type", "text") != "text"
            or not isinstance(part.get("text"), str)):
        raise BadRequest(f"content part {index} of messages[{message}] must be "
                         "{\"type\": \"text\", \"text\": a string}; only text parts are supported",
                         "messages")
    return part["text"]


def _options(raw: object) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest("'skillmoe' must be an object, e.g. {\"route_only\": true}", "skillmoe")
    unknown = sorted(set(raw) - {"route_only", "choices", "answer_type"})
    if unknown:
        raise BadRequest(f"unknown skillmoe option {unknown[0]!r}; valid: answer_type, choices, route_only",
                         "skillmoe")
    choices = raw.get("choices")
    if choices is not None and (not isinstance(choices, list) or not 2 <= len(choices) <= 10):
        raise BadRequest("skillmoe.choices must be a list of 2 to 10 option strings", "skillmoe")
    if raw.get("answer_type", "auto") not in ("auto", "choice", "math"):
        raise BadRequest("skillmoe.answer_type must be auto, choice or math", "skillmoe")
    if not isinstance(raw.get("route_only", False), bool):
        raise BadRequest(f"skillmoe.route_only must be true or false, got {raw['route_only']!r}", "skillmoe")
    return raw


def _number(data: dict, name: str, low: float, high: float, low_open: bool = False) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            (low < value if low_open else low <= value) and value <= high):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise BadRequest(f"'{name}' must be a number in {interval}, got {value!r}", name)
    return float(value)


def _integer(data: dict, name: str, low: int | None = None) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        raise BadRequest(f"'{name}' must be an integer{f' >= {low}' if low is not None else ''}, "
                         f"got {value!r}", name)
    return value


def check_fields(data: dict, honoured: tuple[str, ...] = HONOURED, refused: dict = REFUSED) -> None:
    """Refuse (BadRequest naming the field) what the service cannot honour; spec fields it ignores pass."""
    for name in data:
        if name in refused and data[name] not in refused[name][0]:
            raise BadRequest(f"unsupported field {name!r}: {refused[name][1]} (leave it out)", name)
        if name not in refused and name not in IGNORED and name not in honoured:
            raise BadRequest(f"unrecognized request field {name!r}; supported: {', '.join(honoured)}", name)


def _n(data: dict, max_n: int) -> int:
    """Replies asked for: 1 to ``serve.max_n``."""
    n = _integer(data, "n", 1) or 1
    if n > max_n:
        raise BadRequest(f"'n' must be at most {max_n} on this service (serve.max_n), got {n}", "n")
    return n


def _stop(data: dict) -> tuple[str, ...]:
    """The stop sequences: a string or a list of up to four (OpenAI's rule); null or empty: none."""
    stop = data.get("stop")
    items = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(items, list) or len(items) > MAX_STOP or not all(isinstance(x, str) for x in items):
        raise BadRequest(f"'stop' must be a string or a list of up to {MAX_STOP} strings, got {stop!r}",
                         "stop")
    return tuple(x for x in items if x)


def apply_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """(``text`` cut before the first occurrence of any stop string, whether it was cut), as OpenAI does."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[:min(cuts)], True) if cuts else (text, False)


def _sampling(data: dict) -> ReplySampling:
    """The request's own sampling of its reply: temperature, top_p, max_(completion_)tokens, seed."""
    tokens, completion = _integer(data, "max_tokens", 1), _integer(data, "max_completion_tokens", 1)
    if tokens is not None and completion is not None and tokens != completion:
        raise BadRequest("'max_tokens' and 'max_completion_tokens' differ; give one of them",
                         "max_completion_tokens")
    return ReplySampling(temperature=_number(data, "temperature", 0, 2),
                         top_p=_number(data, "top_p", 0, 1, True),
                         max_tokens=completion or tokens, seed=_integer(data, "seed"))


def _streaming(data: dict) -> tuple[bool, bool]:
    """(stream, include_usage) from ``stream`` and ``stream_options``."""
    stream, options = data.get("stream") or False, data.get("stream_options")
    if not isinstance(stream, bool):
        raise BadRequest(f"'stream' must be true or false, got {stream!r}", "stream")
    if options is None:
        return stream, False
    if not stream:
        raise BadRequest("'stream_options' is only allowed when 'stream' is true", "stream_options")
    if not isinstance(options, dict) or set(options) - {"include_usage", "include_obfuscation"}:
        raise BadRequest("'stream_options' must be an object with 'include_usage' (true or false)",
                         "stream_options")
    include = options.get("include_usage", False)
    if not isinstance(include, bool):
        raise BadRequest(f"stream_options.include_usage must be true or false, got {include!r}",
                         "stream_options")
    return stream, include


def load_body(body: bytes, max_bytes: int) -> dict:
    """The request's JSON object, or BadRequest saying why it is not one."""
    if len(body) > max_bytes:
        raise BadRequest(f"request body is {len(body)} bytes; the limit is {max_bytes}")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply to be a chat request") from None
    except ValueError:  # Python's limit on integer digits (CVE-2020-10735)
        limit = sys.get_int_max_str_digits()
        raise BadRequest(f"request body has a JSON number over {limit} digits") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    for name, value in data.items():  # a lone surrogate would fail the engine batch it joins
        bad = invalid_text(value, name)
        if bad:
            raise BadRequest(bad, name)
    return data


def parse_request(body: bytes, max_bytes: int, default_k: int, max_n: int = 1) -> Job:
    """Validate a /v1/chat/completions body into a Job, or raise BadRequest naming the problem."""
    data = load_body(body, max_bytes)
    check_fields(data)
    question, context = _conversation(data.get("messages"))
    stream, include_usage = _streaming(data)
    return make_job(data, "chatcmpl", question, default_k, max_n, context=context, stream=stream,
                    include_usage=include_usage)


def make_job(data: dict, prefix: str, question: str, default_k: int, max_n: int, **fields) -> Job:
    """The Job of a checked request body: model, skillmoe options, sampling, stop and n."""
    model = data.get("model") or "symbolic-moe"
    if not isinstance(model, str):
        raise BadRequest("'model' must be a string", "model")
    method, k = resolve_model(model, default_k)
    options = _options(data.get("skillmoe"))
    choices = options.get("choices")
    return Job(
        request_id=f"{prefix}-{uuid.uuid4().hex[:24]}",
        model=model,
        method=method,
        k=k,
        question=question,
        choices=tuple(str(c) for c in choices) if choices else None,
        answer_type=options.get("answer_type", "auto"),
        route_only=options.get("route_only", False),
        sampling=_sampling(data),
        stop=_stop(data),
        n=_n(data, max_n),
        **fields,
    )


def completion_response(job: Job, replies: list[tuple[str, str]], usage: dict, skillmoe: dict) -> dict:
    """An OpenAI chat.completion object, one choice per (content, finish_reason), routing details under
    ``skillmoe``."""
    return {
        "id": job.request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": job.model,
        "choices": [{"index": i, "message": {"role": "assistant", "content": content},
                     "finish_reason": finish} for i, (content, finish) in enumerate(replies)],
        "usage": usage_body(usage),
        "skillmoe": skillmoe,
    }


def usage_body(usage: dict) -> dict:
    """OpenAI's usage object: the tokens of the reply the client receives (its generation's prompt and
    output); the whole ensemble's are in ``skillmoe.usage``."""
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def model_object(name: str, created: int) -> dict:
    """One entry of /v1/models (and the body of /v1/models/{name})."""
    return {"id": name, "object": "model", "created": created, "owned_by": "skillmoe-ray"}


def models_response(default_k: int, created: int) -> dict:
    """The /v1/models list; ``created`` is when the service started (Unix seconds)."""
    return {"object": "list", "data": [model_object(m, created) for m in model_names(default_k)]}
