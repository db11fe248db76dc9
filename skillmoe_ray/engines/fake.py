"""A deterministic stand-in engine for testing orchestration (and dry runs of a config).

It loads nothing. Its replies are derived from a hash of (model, messages, seed) and follow the
formats the pipeline parses: "Skills: a, b" for the keyword prompt, "The answer is (X)" or a boxed
number for answer prompts. It never stands in for a real engine in what the project delivers.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict

from skillmoe_ray.engines.base import Engine, GenOutput, GenRequest
from skillmoe_ray.errors import EngineError
from skillmoe_ray.seeding import derive_seed, stable_hash

FAKE_SKILLS = (
    "algebra", "geometry", "probability", "genetics", "optics", "enzymes",
    "statistics", "calculus", "stoichiometry", "pharmacology", "mechanics", "economics",
)


class FakeEngine(Engine):
    """Hash-based replies in the pipeline's formats; optional delays and failures for tests."""

    name = "fake"
    steerable = True
    MOE_SHAPE = (2, 4)  # (MoE layers, experts) of the routing statistics analyze requests get
    OPTIONS = {
        # seconds each generate() call takes (to test kills and timelines)
        "delay_s": 0.0,
        # seconds each request adds to its generate() call (a slow engine: long groups, chunk by chunk)
        "request_delay_s": 0.0,
        # a file each generate() call appends one JSON line to per request, before generating ({"model",
        # "tag", "request": a hash of the request}), so tests can count what was (re)generated
        "request_log": None,
        # seconds load() takes
        "load_delay_s": 0.0,
        # expert names whose generate() raises (to test failure handling)
        "fail_models": [],
        # a wake corrupts the weights (to test the probe after wake)
        "corrupt_on_wake": False,
        # the process exits in the middle of its first generate() of this stage ("stage:marker file"): a
        # dead actor; the marker file makes it happen once per run (to test retries on a fresh actor)
        "die_once": None,
        # the first generate() of this stage writes the expert's name to a marker file ("stage:marker file")
        # and goes on (delay_s): a test waiting for the file can fault the cluster mid-stage (kill a node)
        "signal_once": None,
    }

    @classmethod
    def sleeps_with(cls, options: dict) -> bool:
        return True

    @classmethod
    def check_kwargs(cls, kwargs: dict, where: str) -> None:
        """Any pass-through arguments, unused: a config written for a real engine dry-runs unchanged."""

    @property
    def can_sleep(self) -> bool:
        return True

    corrupted = False

    def _load(self) -> None:
        time.sleep(self.options["load_delay_s"])
        self.corrupted = False

    def _sleep(self) -> None:
        pass

    def _wake(self) -> None:
        self.corrupted = bool(self.options["corrupt_on_wake"])

    def probe(self) -> dict:
        """Instant, and different once a wake has "corrupted" the weights."""
        return {"text": "garbled" if self.corrupted else "one two three", "seconds": 0.0}

    def _unload(self) -> None:
        pass

    def _generate(self, requests: list[GenRequest]) -> list[GenOutput]:
        if self.spec.name in self.options["fail_models"]:
            raise EngineError(f"fake failure of expert {self.spec.name!r}")
        # as a real tokenizer does, text that is not valid Unicode fails the whole call
        for request in requests:
            "".join(content for _, content in request.messages).encode("utf-8")
        self._log_requests(requests)
        self._maybe_die(requests)
        self._maybe_signal(requests)
        time.sleep(self.options["delay_s"] + self.options["request_delay_s"] * len(requests))
        return [self._reply(r) for r in requests]

    def _log_requests(self, requests: list[GenRequest]) -> None:
        """Append one line per request to ``request_log`` (one write, so concurrent actors'
        lines stay whole)."""
        if not self.options["request_log"] or not requests:
            return
        lines = "".join(
            json.dumps(
                {
                    "model": self.spec.name,
                    "tag": r.tag,
                    "request": stable_hash([r.messages, asdict(r.sampling)], 16),
                }
            )
            + "\n"
            for r in requests
        )
        with open(self.options["request_log"], "a", encoding="utf-8") as f:
            f.write(lines)

    def _first_of_stage(self, option: str, requests: list[GenRequest]) -> bool:
        """Whether this is the first call, in this run, of the stage named by ``option``
        ("stage:marker file"); the marker file (written now, with the expert's name) makes it happen once."""
        from pathlib import Path

        if not self.options[option]:
            return False
        stage, marker = self.options[option].split(":", 1)
        if requests and requests[0].tag.startswith(stage + "/") and not Path(marker).exists():
            Path(marker).write_text(self.spec.name)
            return True
        return False

    def _maybe_die(self, requests: list[GenRequest]) -> None:
        """Exit the process (as an OOM kill or a segfault would) once, when ``die_once`` names this stage."""
        if self._first_of_stage("die_once", requests):
            import os

            os._exit(1)

    def _maybe_signal(self, requests: list[GenRequest]) -> None:
        """Write the marker file once, when ``signal_once`` names this stage (the caller acts on it)."""
        self._first_of_stage("signal_once", requests)

    def _reply(self, request: GenRequest) -> GenOutput:
        prompt = "\n".join(content for _, content in request.messages)
        question = prompt.split("Question:", 1)[-1]
        if request.analyze:
            return self._routing(question, len(prompt.split()))
        if (
            "Skills:" in prompt or "Keywords:" in prompt
        ):  # the project's or the paper protocol's keyword prompt
            text = self._skills(question, request.sampling.seed)
        else:
            steering = [] if request.steering is None else [request.steering.bias, request.steering.experts]
            h = derive_seed(self.spec.name, question, request.sampling.seed, *steering)
            text = (
                f"Working through it. The answer is \\boxed{{{h % 5}}}."
                if "boxed" in prompt
                else (f"Let me think step by step. The answer is ({'ABCD'[h % 4]})")
            )
        return GenOutput(
            text, prompt_tokens=len(prompt.split()), output_tokens=len(text.split()), finish_reason="stop"
        )

    def _routing(self, question: str, prompt_tokens: int) -> GenOutput:
        """Routing statistics fixed by the question: 2 of the experts per layer, chosen by its hash."""
        layers, experts = self.MOE_SHAPE
        counts = [[0.0] * experts for _ in range(layers)]
        for layer in range(layers):
            h = derive_seed(self.spec.name, question, layer)
            for e in (h % experts, (h // experts + 1 + h % experts) % experts):
                counts[layer][e] += 1.0
        # the paper score's shares: the question's experts get its salient tokens, the rest the common ones
        bins = [[[0.0] * 8 + [c, c] for c in row] for row in counts]
        common = [[0.5 - 0.5 * c for c in row] for row in counts]
        return GenOutput(
            "",
            prompt_tokens,
            0,
            "analyze",
            router={"counts": counts, "saliency": counts, "bins": bins, "common": common},
        )

    @staticmethod
    def _skills(question: str, seed: int) -> str:
        """Two skills fixed by the question, and sometimes a third that varies between samples."""
        base = derive_seed("skills", question)
        chosen = [FAKE_SKILLS[base % len(FAKE_SKILLS)], FAKE_SKILLS[(base // 13) % len(FAKE_SKILLS)]]
        if derive_seed("extra", question, seed) % 3 == 0:
            chosen.append(FAKE_SKILLS[derive_seed(seed) % len(FAKE_SKILLS)])
        return "Skills: " + ", ".join(dict.fromkeys(chosen))
