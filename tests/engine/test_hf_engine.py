"""The transformers engine on a tiny random-weight model: seeded, batch-independent, templated once."""

from __future__ import annotations

import pytest

from skillmoe_ray.config import ModelSpec
from skillmoe_ray.engines.base import ACTIVE, SLEEPING, UNLOADED, GenRequest, Sampling
from skillmoe_ray.engines.hf_engine import HFEngine

pytestmark = pytest.mark.engine


def request(text: str, seed: int, temperature: float = 0.7) -> GenRequest:
    return GenRequest.make([{"role": "user", "content": text}], Sampling(12, temperature, 1.0, seed))


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    eng = HFEngine(ModelSpec(name="tiny", path=str(tiny_model_dir)), {"batch_size": 4}, "float32")
    eng.load()
    yield eng
    eng.unload()


def test_generates_text_with_token_counts(engine):
    out = engine.generate([request("What is the derivative of x squared?", 1)])[0]
    assert out.text.strip()
    assert 0 < out.output_tokens <= 12
    assert out.finish_reason in ("stop", "length")


def test_same_seed_same_output_whatever_the_batch(engine):
    alone = engine.generate([request("Which enzyme digests starch?", 7)])[0]
    batched = engine.generate([request("A different, longer question about genetics and probability?", 3),
                               request("Which enzyme digests starch?", 7),
                               request("Another one", 9)])[1]
    assert batched.text == alone.text


def test_different_seeds_sample_differently(engine):
    texts = {engine.generate([request("Name a skill", seed)])[0].text for seed in range(6)}
    assert len(texts) > 1


def test_chat_template_is_applied_exactly_once(engine):
    """The template already holds BOS; tokenizing must not add a second one.

    Adding a second one was a defect of the original code.
    """
    messages = [{"role": "user", "content": "hello"}]
    templated = engine.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = engine.tokenizer(templated, add_special_tokens=False)["input_ids"]
    assert ids.count(engine.tokenizer.bos_token_id) == 1
    out = engine.generate([GenRequest.make(messages, Sampling(4, 0.0, 1.0, 0))])[0]
    assert out.prompt_tokens == len(ids)


def test_sleep_and_wake_keep_the_engine_usable(engine):
    before = engine.generate([request("stable?", 5, temperature=0.0)])[0].text
    engine.sleep()
    assert engine.info.state == SLEEPING
    engine.wake()
    assert engine.info.state == ACTIVE
    assert engine.generate([request("stable?", 5, temperature=0.0)])[0].text == before


def test_unload_then_generate_is_refused(tiny_model_dir):
    eng = HFEngine(ModelSpec(name="tiny", path=str(tiny_model_dir)), {}, "float32")
    eng.load()
    eng.unload()
    assert eng.info.state == UNLOADED and eng.model is None
    with pytest.raises(RuntimeError, match="unloaded"):
        eng.generate([request("x", 1)])


def test_max_model_len_is_applied_as_vllm_does_a_reply_stops_at_the_context_a_prompt_filling_it_is_refused(
    tiny_model_dir,
):
    eng = HFEngine(ModelSpec(name="tiny", path=str(tiny_model_dir), max_model_len=40), {}, "float32")
    eng.load()
    try:
        short = eng.generate(
            [GenRequest.make([{"role": "user", "content": "Hi"}], Sampling(200, 0.0, 1.0, 1))]
        )[0]
        assert short.prompt_tokens + short.output_tokens <= 40
        with pytest.raises(ValueError, match=r"does not fit model 'tiny': pool.models.tiny.max_model_len=40"):
            eng.generate([request("word " * 60, 1)])
    finally:
        eng.unload()


def test_prepare_imports_what_the_first_load_needs_before_it(tiny_model_dir):
    """An expert's process prepares its engine when it starts (the serving warm-up starts every model), so a
    first load no longer pays for torch, transformers' auto classes and the architecture's module."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from skillmoe_ray.config import ModelSpec\n"
        "from skillmoe_ray.engines.hf_engine import HFEngine\n"
        f"HFEngine(ModelSpec(name='tiny', path={str(tiny_model_dir)!r}), {{}}, 'float32').prepare()\n"
        "wanted = ('torch', 'transformers.models.llama.modeling_llama')\n"
        "print(sorted(m for m in wanted if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "['torch', 'transformers.models.llama.modeling_llama']"


def test_an_expert_actors_unload_frees_its_model_though_its_imports_are_frozen(tiny_model_dir):
    """ExpertActor freezes what its engine imported (``gc.freeze``), so that each unload's full collection
    scans the model's objects only; a model loaded after the freeze is still freed by the unload."""
    import gc
    import weakref

    from skillmoe_ray.config import EngineConfig
    from skillmoe_ray_actors.expert import ExpertActor

    gc.unfreeze()  # whatever an earlier test froze: the count below is this construction's alone
    try:
        actor = ExpertActor(ModelSpec(name="tiny", path=str(tiny_model_dir)),
                            EngineConfig(name="hf", dtype="float32", options={"device": "cpu"}))
        assert gc.get_freeze_count() > 0
        actor.load()
        model = weakref.ref(actor.engine.model)
        actor.unload()
        assert model() is None
    finally:
        gc.unfreeze()
