"""The task section of a job's config: classification, or generation with its prompt, scoring and length."""

from __future__ import annotations

from dataclasses import dataclass

from ela.checks import _check, _flag, _one_of, _positive_int

TASKS = ("classification", "generation")
SCORINGS = ("choice", "reference", "none")


@dataclass(frozen=True)
class TaskConfig:
    """What a job does with the model: classify (encoders), or generate a fixed number of tokens (decoders)."""

    name: str
    prompt: str = "{text}"  # generation: the template each row's text is put into
    chat_template: bool = False
    scoring: str = "none"
    label_words: list[str] | None = None
    max_new_tokens: int = 32
    stop_at_eos: bool = False

    def __post_init__(self) -> None:
        _one_of("task.name", self.name, TASKS)
        if self.name != "generation":
            return
        _check(
            isinstance(self.prompt, str) and "{text}" in self.prompt,
            "task.prompt",
            self.prompt,
            "a template containing {text}, e.g. 'Review: {text}\\nSentiment:'",
        )
        _flag("task.chat_template", self.chat_template)
        _one_of("task.scoring", self.scoring, SCORINGS)
        _positive_int("task.max_new_tokens", self.max_new_tokens)
        _flag("task.stop_at_eos", self.stop_at_eos)
        _check(
            self.scoring != "reference" or self.stop_at_eos,
            "task.stop_at_eos",
            self.stop_at_eos,
            "true with task.scoring=reference (a fixed length runs past the answer: exact match would be ~0)",
        )
        if self.scoring == "choice":
            words = self.label_words
            ok = isinstance(words, list) and len(words) >= 2 and all(isinstance(w, str) and w.strip() for w in words)
            _check(ok, "task.label_words", words, "two or more words, one per label, e.g. [' negative', ' positive']")

    @property
    def generative(self) -> bool:
        """True for decoder jobs (task=generation)."""
        return self.name == "generation"
