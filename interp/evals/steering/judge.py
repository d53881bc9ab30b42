"""Optional LLM judge for steered text, AxBench-style (Wu et al. 2025): a concept score and a fluency
score, each 0, 1 or 2, from any OpenAI-compatible chat-completions endpoint the user names.

Never required: the offline scores in ``scores`` are the default. The prompts paraphrase
AxBench's ``prompt_templates.py`` rubric (0 = absent / not fluent, 1 = somewhat, 2 = clearly) and
ask for the answer as ``Rating: [[N]]``, which ``parse_rating`` reads (None when the reply has no
valid rating; such items are reported, not scored as 0). The HTTP call goes through a replaceable
``transport`` (a function ``(url, payload, headers) -> response dict``) so the logic is testable
without a network.
"""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any, Callable

import numpy as np

CONCEPT_PROMPT = """Please act as an impartial judge and evaluate whether the specified concept is \
present in the text fragment below. Focus solely on whether the concept is clearly incorporated, \
without regard for grammar or logical coherence.

Rate the concept's relevance on a scale from 0 to 2, where 0 indicates the concept is not present \
at all, 1 indicates the concept is somewhat present but minimally or awkwardly incorporated, and 2 \
indicates the concept is more fully and effectively incorporated, with stronger and more natural \
integration. Provide a brief explanation, then give your rating strictly in this format: \
"Rating: [[score]]".

[Concept Start]
{concept}
[Concept End]

[Text Fragment Start]
{text}
[Text Fragment End]"""

FLUENCY_PROMPT = """Please act as an impartial judge and evaluate the fluency of the text fragment \
below. Focus solely on fluency, disregarding its completeness, relevance, coherence with any \
broader context, or informativeness.

Rate the fluency on a scale from 0 to 2, where 0 indicates the text is not fluent and highly \
unnatural (e.g., incomprehensible or repetitive), 1 indicates it is somewhat fluent but contains \
noticeable errors or awkward phrasing, and 2 indicates the text is fluent and almost perfect. \
Provide a brief explanation, then give your rating strictly in this format: "Rating: [[score]]".

[Text Fragment Start]
{text}
[Text Fragment End]"""

_RATING = re.compile(r"Rating:\s*\[\[\s*([0-9](?:\.[0-9]+)?)\s*\]\]", re.IGNORECASE)

Transport = Callable[[str, dict, dict], dict]


def parse_rating(reply: str) -> float | None:
    """The last ``Rating: [[N]]`` in ``reply`` if 0 <= N <= 2, else None."""
    found = _RATING.findall(reply or "")
    if not found:
        return None
    value = float(found[-1])
    return value if 0 <= value <= 2 else None


def http_transport(timeout: float = 60.0) -> Transport:
    def post(url: str, payload: dict, headers: dict) -> dict:
        req = urllib.request.Request(
            url,
            data=json.dumps(payload).encode(),
            method="POST",
            headers={"Content-Type": "application/json", **headers},
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (user-given endpoint)
            return json.loads(resp.read().decode())

    return post


class LLMJudge:
    """Concept and fluency ratings (0–2) from an OpenAI-compatible endpoint (``base_url`` ends
    before ``/chat/completions``, e.g. ``http://localhost:8000/v1``)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        transport: Transport | None = None,
        temperature: float = 0.0,
        max_tokens: int = 256,
    ):
        if not base_url or not model:
            raise ValueError("the LLM judge needs base_url and model")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.temperature, self.max_tokens = model, temperature, max_tokens
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.transport = transport or http_transport()

    def ask(self, prompt: str) -> str:
        payload = {
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "messages": [{"role": "user", "content": prompt}],
        }
        reply = self.transport(self.url, payload, self.headers)
        try:
            return reply["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as e:
            raise ValueError(f"unexpected reply from {self.url}: {str(reply)[:200]}") from e

    def concept(self, text: str, concept: str) -> float | None:
        return parse_rating(self.ask(CONCEPT_PROMPT.format(concept=concept, text=text)))

    def fluency(self, text: str) -> float | None:
        return parse_rating(self.ask(FLUENCY_PROMPT.format(text=text)))

    def score(self, texts: list[str], concept: str) -> dict[str, Any]:
        """Ratings per text and their harmonic mean (0 if either is 0; NaN where unparsable),
        AxBench's per-example score, on the 0–2 scale."""
        c = np.array([self.concept(t, concept) for t in texts], dtype=float)
        f = np.array([self.fluency(t) for t in texts], dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            h = np.where((c > 0) & (f > 0), 2 * c * f / (c + f), 0.0)
        h = np.where(np.isnan(c) | np.isnan(f), np.nan, h)
        return {"concept": c, "fluency": f, "combined": h, "unparsed": int(np.isnan(h).sum())}
