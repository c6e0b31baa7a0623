"""Load a labelled evaluation split (a local file, or the Hub through `datasets`) and tokenize it once."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ela import ElaError
from ela.runtime.files import SUFFIXES, read_columns
from ela.runtime.hub import require_hub

if TYPE_CHECKING:  # config imports this module's choices: no import of config at run time
    from ela.config import DatasetConfig

ORDERS = ("original", "by_length")  # dataset.order: batch in file order, or sorted by token length


@dataclass(frozen=True)
class EvalSplit:
    """Texts and labels of the split (as the file has them: ids or names), in file order, and their source."""

    texts: list[str]
    labels: list[int | str]
    source: str
    rows: int  # rows in the file or split before dataset.limit

    def warnings(self, limit: int | None) -> list[str]:
        """What the user should know about how much of the split was used."""
        if limit is not None and limit > self.rows:
            return [f"dataset.limit={limit} exceeds the {self.rows} rows of {self.source}: all {self.rows} are used"]
        return []


@dataclass(frozen=True)
class Batches:
    """The split tokenized once into padded batches, in measuring order (original or sorted by length)."""

    inputs: list[dict[str, torch.Tensor]]
    token_lengths: list[int]  # per sample, in batch order, after truncation, padding excluded
    indices: list[int]  # original dataset index of each sample, in batch order

    @property
    def num_samples(self) -> int:
        """Samples in the split."""
        return len(self.token_lengths)

    @property
    def padding_fraction(self) -> float:
        """Share of the token slots the model processes that are padding."""
        slots = sum(int(b["input_ids"].numel()) for b in self.inputs)
        return 1.0 - sum(self.token_lengths) / slots

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        """The distinct input shapes, each a graph or compiled kernel set for static-shape engines."""
        return sorted({shape_key(b) for b in self.inputs})

    @cached_property
    def digest(self) -> str:
        """SHA-256 of the sample order and every input tensor's name, shape, dtype and bytes (computed once)."""
        h = hashlib.sha256(repr(self.indices).encode())
        for inputs in self.inputs:
            for name in sorted(inputs):
                tensor = inputs[name]
                h.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
                # as raw bytes, so any dtype hashes (numpy has no bfloat16)
                h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def to(self, device: torch.device) -> Batches:
        """Move every batch to the device once (host-to-device copies stay out of the timed loops)."""
        moved = [{k: v.to(device, non_blocking=True) for k, v in b.items()} for b in self.inputs]
        return Batches(moved, self.token_lengths, self.indices)


def shape_key(inputs: dict[str, torch.Tensor]) -> tuple:
    """A batch's shape as a static-shape engine sees it: every input's shape (packed batches have several)."""
    return tuple((k, *v.shape) for k, v in inputs.items())


def local_file(cfg: DatasetConfig) -> Path:
    """The local file to read: `path` itself, or `path/local_file` for a folder."""
    path = Path(cfg.path).expanduser()
    if not path.exists():
        raise ElaError(f"dataset.path={cfg.path!r} does not exist; pass an existing file or folder")
    if path.is_dir():
        if not cfg.local_file:
            raise ElaError(f"dataset.path={cfg.path!r} is a folder: also set dataset.local_file=<file in it>")
        path = path / cfg.local_file
        if not path.is_file():
            raise ElaError(f"{path} not found (dataset.path + dataset.local_file)")
    if path.suffix.lower() not in SUFFIXES:
        raise ElaError(f"dataset file {path} has an unsupported type; use one of {', '.join(SUFFIXES)}")
    return path


def load_split(cfg: DatasetConfig) -> EvalSplit:
    """Read the split (a local file directly, a Hub dataset through `datasets`), check columns, apply `limit`."""
    if cfg.path:
        path = local_file(cfg)
        source = str(path.resolve())
        columns = read_columns(path)
        if not columns or not any(columns.values()):
            raise ElaError(f"dataset file {path} is empty (a header and no rows)")
    else:
        source = f"hub:{cfg.hub_id}/{cfg.hub_config or ''}:{cfg.split}"
        columns = _hub_columns(cfg)

    missing = [c for c in (cfg.text_column, cfg.label_column) if c not in columns]
    if missing:
        raise ElaError(
            f"dataset {source} has no column(s) {missing}; its columns are {list(columns)}. "
            "Set dataset.text_column / dataset.label_column"
        )
    texts, labels = columns[cfg.text_column], columns[cfg.label_column]
    rows = len(texts)
    if cfg.limit:
        texts, labels = texts[: cfg.limit], labels[: cfg.limit]
    if not texts:
        raise ElaError(f"dataset {source} is empty")
    return EvalSplit(
        texts=[str(t) for t in texts],
        labels=[v if isinstance(v, int) else str(v) for v in labels],
        source=source,
        rows=rows,
    )


def _hub_columns(cfg: DatasetConfig) -> dict[str, list]:
    """A Hub split's columns, through `datasets` (imported only here); offline or unknown: one clear error."""
    require_hub("dataset", cfg.hub_id, "dataset.path=/path/to/folder_or_file (or ELA_SST2_PATH)")
    import datasets

    datasets.disable_progress_bars()
    try:
        ds = datasets.load_dataset(cfg.hub_id, cfg.hub_config, split=cfg.split)
    except Exception as err:  # offline, unknown ID, no such split: all need the same advice
        raise ElaError(
            f"could not load dataset {cfg.hub_id!r} ({cfg.hub_config}, split {cfg.split}) from the "
            f"Hugging Face Hub: {type(err).__name__}: {err}. Offline? Use a local copy: "
            "dataset.path=/path/to/folder_or_file (or ELA_SST2_PATH for dataset=sst2)"
        ) from err
    wanted = (cfg.text_column, cfg.label_column)  # the others are only named (in an error), not read
    return {name: ds[name] if name in wanted else None for name in ds.column_names}


def label_targets(labels: list[int | str], cfg: DatasetConfig, id2label: dict[int, str]) -> list[int]:
    """The model output index each dataset label stands for, or one ElaError that says how to map them.

    A label maps through `dataset.label_map` (label -> model label name) if given; else an integer is a
    dataset id, named by `dataset.label_names` (matched to the model's names) or taken as the model's
    id; else a string is one of `label_names` or one of the model's own label names.
    """
    model_names = {name.lower(): i for i, name in id2label.items()}
    generic = all(name == f"LABEL_{i}" for i, name in id2label.items())  # a checkpoint without label names
    names = cfg.label_names or []
    if names and not generic:
        missing = [n for n in names if n.lower() not in model_names]
        if missing:
            raise ElaError(
                f"dataset labels {missing} are not among the model's labels {sorted(id2label.values())}; set "
                "dataset.label_names to the model's names, or map them: dataset.label_map={<dataset label>: "
                "<model label>, ...}"
            )
    if names and generic and len(names) != len(id2label):
        raise ElaError(f"the model has {len(id2label)} labels but the dataset has {len(names)}: {names}")

    def by_name(name: str) -> int | None:
        return model_names.get(name.lower()) if not generic else (names.index(name) if name in names else None)

    out = []
    for row, value in enumerate(labels):
        text = str(value)
        if cfg.label_map is not None:
            if text not in cfg.label_map:
                raise ElaError(
                    f"row {row}: label {value!r} is not a key of dataset.label_map {cfg.label_map}; add it there"
                )
            target = model_names.get(str(cfg.label_map[text]).lower())
            if target is None:
                raise ElaError(
                    f"dataset.label_map maps {text!r} to {cfg.label_map[text]!r}, which is not one of the "
                    f"model's labels {sorted(id2label.values())}"
                )
        elif isinstance(value, int) or text.lstrip("-").isdigit():
            label = int(text)
            upper = len(names) if names else len(id2label)
            if not 0 <= label < upper:
                raise ElaError(
                    f"row {row}: label {label} is outside the dataset's labels {names or list(range(len(id2label)))}"
                )
            target = by_name(names[label]) if names else label
        elif text in names:
            target = by_name(text)
        else:
            target = None if generic else model_names.get(text.lower())
        if target is None:
            seen = sorted({str(v) for v in labels})[:6]
            suggestion = ", ".join(f"{v}: {n}" for v, n in zip(seen, sorted(id2label.values()), strict=False))
            raise ElaError(
                f"row {row}: label {value!r} is neither an integer, nor one of dataset.label_names {names}, nor "
                f"one of the model's labels {sorted(id2label.values())}; map the dataset's labels to the model's, "
                f"e.g. dataset.label_map={{{suggestion}}}"
            )
        out.append(target)
    return out


def bucket_for(longest: int, buckets: list[int] | int | None, max_length: int) -> int | None:
    """The padded length of a batch: the smallest bucket that fits, else max_length; None = its longest.

    An int is a step: the next multiple of it (e.g. 8: lengths 8, 16, 24, ...), at most max_length.
    """
    if not buckets:
        return None
    if isinstance(buckets, int):
        return min(-(-longest // buckets) * buckets, max(max_length, longest))
    return next((b for b in sorted(buckets) if b >= longest), max(max_length, longest))


def tokenize(
    tokenizer,
    texts: list[str],
    batch: int,
    max_length: int,
    buckets: list[int] | int | None = None,
    order: str = "original",
    special_tokens: bool = True,
    packing: tuple[int, int] | None = None,
) -> Batches:
    """Tokenize each text once, then batch in order (or by length), padding to the longest or a bucket.

    Padding goes on the tokenizer's side: right for classifiers, left for generation (prompts end together).
    packing=(row tokens, first position id): each batch packed into rows instead (`ela.runtime.packing`).
    """
    enc = tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=special_tokens)
    lengths = [len(ids) for ids in enc["input_ids"]]
    indices = list(range(len(texts)))
    if order == "by_length":
        indices.sort(key=lambda i: lengths[i])
    inputs = []
    for start in range(0, len(indices), batch):
        chunk = indices[start : start + batch]
        if packing is not None:
            from ela.runtime.packing import pack

            ids = [enc["input_ids"][i] for i in chunk]
            inputs.append(pack(ids, packing[0], tokenizer.pad_token_id, packing[1]))
            continue
        target = bucket_for(max(lengths[i] for i in chunk), buckets, max_length)
        features = [{k: enc[k][i] for k in enc} for i in chunk]
        padded = tokenizer.pad(
            features, padding="max_length" if target else "longest", max_length=target, return_tensors="pt"
        )
        inputs.append(dict(padded))
    return Batches(inputs=inputs, token_lengths=[lengths[i] for i in indices], indices=indices)
