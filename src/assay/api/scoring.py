"""The one way a route gets results: request limits, the group's queue via ``ConsumerGroup.score``, the header
naming truncated inputs. /classify, /rerank and /zero_shot differ only in how they build inputs and shape output.
"""

from __future__ import annotations

import math

from fastapi import Header, Request

from assay.api.disconnect import until_disconnected
from assay.api.state import ServerState
from assay.engine.group import Scored
from assay.errors import InvalidInput, TooLarge
from assay.models.adapter import InputKind, Inputs

TRUNCATED_HEADER = "X-Assay-Truncated"


def enforce_limits(inputs: Inputs, state: ServerState, sequences: int | None = None) -> None:
    """Sequences per request and bytes per text, each a 413 naming its limit.

    ``sequences`` counts what the model will run when one input makes several (zero-shot: texts x labels).
    """
    config = state.config
    count = len(inputs.items) if sequences is None else sequences
    if count > config.max_user_batch_size:
        raise TooLarge(
            f"the request holds {count} inputs; the limit is {config.max_user_batch_size} "
            "(TAKEOFF_MAX_USER_BATCH_SIZE)"
        )
    limit = config.max_prompt_string_bytes
    for i, item in enumerate(inputs.items):
        for part in item if inputs.kind is InputKind.PAIRS else (item,):
            # Cheap bound first: a str of n characters has at most 4n UTF-8 bytes.
            if len(part) * 4 > limit and len(part.encode("utf-8", "surrogatepass")) > limit:
                raise TooLarge(
                    f"text[{i}] is over {limit} bytes (TAKEOFF_MAX_PROMPT_STRING_BYTES)"
                )


def parse_timeout(value: str | None) -> float | None:
    """X-Request-Timeout in seconds: a positive, finite number (nan or inf would never fire)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise InvalidInput(f"X-Request-Timeout must be a number of seconds, got '{value}'") from None
    if not (seconds > 0 and math.isfinite(seconds)):
        raise InvalidInput("X-Request-Timeout must be a positive, finite number of seconds")
    return seconds


async def request_timeout(
    x_request_timeout: str | None = Header(
        None, description="Seconds after which queued work is dropped and the request fails with 504."
    ),
) -> float | None:
    """A dependency, so every scoring route documents and parses the header the same way."""
    return parse_timeout(x_request_timeout)


async def score(
    request: Request,
    state: ServerState,
    group: str,
    inputs: Inputs,
    timeout: float | None,
    *,
    sequences: int | None = None,
) -> tuple[Scored, dict[str, str]]:
    """Results of ``inputs`` from the named group, with the response headers they call for.

    The work is cancelled (its queued items dropped) if the client disconnects before it is done.
    """
    enforce_limits(inputs, state, sequences)
    work = state.registry.group(group).score(inputs, timeout=timeout)
    scored = await until_disconnected(request, work)
    headers = {TRUNCATED_HEADER: ",".join(str(i) for i in scored.truncated)} if scored.truncated else {}
    return scored, headers
