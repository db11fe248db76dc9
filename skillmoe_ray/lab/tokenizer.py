"""The skill lab's tokenizer: whole words (with their leading space), single digits, single symbols.

A word-level vocabulary keeps sequences short for tiny models; splitting numbers into digits lets a
model compute with them (700 is "7", "0", "0"). Unlike the random-weight demo's tokenizer, text
round-trips exactly (tokens keep their leading space and decode by plain concatenation), so a
trained model's "The answer is \\boxed{700}" reads back as written and the answer extraction sees it.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ["<unk>", "<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
# No system turn: a 95k-parameter model follows no instructions, so the pipeline's system prompts would
# only lengthen every sequence (training time grows with it). The user turn carries the whole task.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages if m['role'] != 'system' %}"
    "<|{{ m['role'] }}|> {{ m['content'] }} <|end|> "
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
# A newline, a word with its leading space, a digit or a symbol with its leading space, a lone space.
PIECES = r"\n| ?[A-Za-z]+| ?[0-9]| ?[^\sA-Za-z0-9]| "
# Every letter, digit and printable symbol with and without a leading space, so that any text built
# from them (a model's stray output, an option letter) has a token even if the corpus lacked it.
BASE_PIECES = [p for c in string.ascii_letters + string.digits + string.punctuation for p in (c, " " + c)]


def build_tokenizer(corpus: Iterable[str], out_dir: Path | None = None):
    """Train the word-level vocabulary on ``corpus``; saved as a transformers tokenizer when ``out_dir``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(PIECES), behavior="isolated")
    tok.decoder = decoders.Fuse()
    trainer = trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS, min_frequency=1)
    tok.train_from_iterator([*BASE_PIECES, "\n", " ", *corpus], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    if out_dir is not None:
        fast.save_pretrained(out_dir)
    return fast
