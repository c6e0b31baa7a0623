"""Prompts for generation: the template applied to each row, label words as token ids, checks before loading."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ela import ElaError
from ela.runtime.data import Batches, tokenize

if TYPE_CHECKING:  # config imports this package's choices: no import of config at run time
    from ela.config import EngineConfig, ModelConfig, TaskConfig


def build(texts: list[str], task: TaskConfig, tokenizer, column: str) -> list[str]:
    """Each text, stripped, in `task.prompt` (and the tokenizer's chat template when asked); empty ones are an error."""
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise ElaError(
            f"{len(empty)} of {len(texts)} rows have an empty prompt text in column {column!r} (first: row "
            f"{empty[0]}); set dataset.text_column to the column that holds the prompts"
        )
    # Surrounding whitespace is not part of a sentence (SST-2 has trailing spaces): it would end up before the
    # prompt's next line and change what follows.
    prompts = [task.prompt.replace("{text}", t.strip()) for t in texts]
    if not task.chat_template:
        return prompts
    if not getattr(tokenizer, "chat_template", None):
        raise ElaError("task.chat_template=true but this tokenizer has no chat template: set task.chat_template=false")
    return [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]


def label_word_ids(tokenizer, words: list[str]) -> list[int]:
    """The one token id of each label word (with its leading space, as it follows the prompt)."""
    ids = []
    for w in words:
        tokens = tokenizer(w, add_special_tokens=False)["input_ids"]
        if len(tokens) != 1:
            pieces = tokenizer.convert_ids_to_tokens(tokens)
            raise ElaError(
                f"task.label_words: {w!r} is {len(tokens)} tokens for this tokenizer ({pieces}); next-token choice "
                "needs one token per word: pick other words (a leading space often makes one), or scoring=reference"
            )
        ids.append(tokens[0])
    if len(set(ids)) != len(ids):
        raise ElaError(f"task.label_words {words} map to the same token: each label needs a word of its own")
    return ids


def batches(
    tokenizer,
    prompts: list[str],
    batch: int,
    model: ModelConfig,
    engine: EngineConfig,
    task: TaskConfig,
    context: int,
    order: str = "original",
) -> Batches:
    """Left-padded prompt batches, after checking every prompt (plus its new tokens) fits; nothing is truncated."""
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=not task.chat_template)["input_ids"]]
    longest = max(lengths)
    row = lengths.index(longest)
    if longest > model.max_length:
        raise ElaError(
            f"row {row}: its prompt is {longest} tokens, above model.max_length={model.max_length}; prompts are never "
            f"truncated in generation (it would change the task): raise model.max_length to at least {longest}"
        )
    if context and longest + task.max_new_tokens > context:
        raise ElaError(
            f"row {row}: its prompt ({longest} tokens) plus task.max_new_tokens={task.max_new_tokens} exceeds the "
            f"model's context of {context} tokens; lower task.max_new_tokens or shorten the prompts"
        )
    specials = not task.chat_template  # a chat template writes its own special tokens
    return tokenize(tokenizer, prompts, batch, model.max_length, engine.buckets, order, special_tokens=specials)
