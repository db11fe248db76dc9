"""protocol=paper: the reference protocol's prompt structure and format contracts, and its rules."""

from __future__ import annotations

import pytest

from skillmoe_ray.data.instances import CHOICE, MATH, Instance
from skillmoe_ray.errors import ConfigError
from skillmoe_ray.method.aggregate import aggregator_messages, expert_messages, extract_answer
from skillmoe_ray.method.skills import keyword_messages, parse_keywords
from tests.conftest import compose_tree, make_config
from tests.unit.test_pipeline import run_pipeline

MC = Instance("q1", "t", "Which organelle makes ATP?", "A", CHOICE,
              ("Mitochondrion", "Ribosome", "Nucleus", "Vacuole"))
MATH_Q = Instance("q2", "t", "What is 12 * 17?", "204", MATH)


def test_paper_prompts_are_one_user_turn_with_the_references_format_contracts():
    for messages in (
        keyword_messages(MC, prompts="paper"),
        expert_messages(MC, prompts="paper"),
        expert_messages(MATH_Q, prompts="paper"),
        aggregator_messages(MC, ["x"], prompts="paper"),
    ):
        assert [m["role"] for m in messages] == ["user"]
    assert (
        keyword_messages(MC, prompts="paper")[0]["content"]
        .rstrip()
        .endswith("Keywords: <keyword1>, <keyword2>, ...")
    )
    assert '"The answer is (X)"' in expert_messages(MC, prompts="paper")[0]["content"]
    assert '"The answer is \\boxed{X}"' in expert_messages(MATH_Q, prompts="paper")[0]["content"]
    assert "(A) Mitochondrion" in expert_messages(MC, prompts="paper")[0]["content"]
    # the project's prompts keep their system turn
    assert [m["role"] for m in expert_messages(MC)] == ["system", "user"]


def test_the_paper_aggregation_prompt_numbers_model_responses_without_their_reasoning():
    text = aggregator_messages(
        MC, ["<think>long</think>The answer is (A)", "The answer is (B)"], prompts="paper"
    )[0]["content"]
    assert text.index("Responses from models:") < text.index("### Model 1's response:\nThe answer is (A)")
    assert "### Model 2's response:\nThe answer is (B)" in text and "long" not in text
    assert text.index("### Model 2's response") < text.index("Question: Which organelle")


def test_keywords_lines_parse_like_skills_lines():
    assert parse_keywords("Keywords: cell biology, bioenergetics.") == ["cell biology", "bioenergetics"]
    assert parse_keywords("Sure.\nKeywords: <genetics>, <probability>") == ["genetics", "probability"]
    assert extract_answer("Reasoning... The answer is (A)", MC) == "A"


def test_protocol_paper_composes_the_papers_settings_and_project_is_the_default(tmp_path):
    paper = compose_tree(["+experiment=gpqa", "protocol=paper"])
    assert paper["prompts"] == "paper" and paper["skills"]["repeated"] == "count"
    assert paper["recruit"]["rare_expert_share"] == 0.05 and paper["aggregator"]["whole_pool"] is True
    default = compose_tree(["+experiment=gpqa"])
    assert default["prompts"] == "project" and default["skills"]["repeated"] == "once"
    assert default["recruit"]["rare_expert_share"] is None and default["aggregator"]["whole_pool"] is False
    with pytest.raises(ConfigError, match="prompts: unknown prompt set 'mine'; valid: project, paper"):
        make_config(tmp_path, ["prompts=mine"])


def test_whole_pool_aggregator_selection_benchmarks_every_expert(tmp_path):
    listed = make_config(tmp_path, ["aggregator.candidates=[tiny-llama-a]"])
    assert listed.aggregator_candidates() == ["tiny-llama-a"]
    whole = make_config(tmp_path, ["aggregator.candidates=[tiny-llama-a]", "aggregator.whole_pool=true"])
    assert whole.aggregator_candidates() == [s.name for s in whole.experts] and len(whole.experts) > 1


def test_a_whole_run_under_the_paper_protocol(tmp_path):
    results, _ = run_pipeline(make_config(tmp_path, ["protocol=paper"]))
    assert set(results["aggregator"]["accuracy"]) == set(results["pool"])  # every expert benchmarked
    assert "rare_experts_replaced" in results["recruitment"]
    skills = (tmp_path / "run" / "skills.jsonl").read_text()
    assert '"skills": []' not in skills.splitlines()[0]  # the keyword replies parsed
