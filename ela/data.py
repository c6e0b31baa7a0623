"""Load a labelled evaluation split (Hub or local file, through `datasets`) and tokenize it once."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch

from ela import ElaError
from ela.config import DatasetConfig
from ela.hub import require_hub

# File suffix -> `datasets` builder and the reader options it needs.
BUILDERS = {
    ".tsv": ("csv", {"sep": "\t", "quoting": csv.QUOTE_NONE, "keep_default_na": False}),
    ".csv": ("csv", {"keep_default_na": False}),
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".parquet": ("parquet", {}),
}


@dataclass(frozen=True)
class EvalSplit:
    """Texts and integer labels of the split, in file order, plus where they came from."""

    texts: list[str]
    labels: list[int]
    source: str


@dataclass(frozen=True)
class Batches:
    """The split tokenized once into padded batches, in measuring order (original or sorted by length)."""

    inputs: list[dict[str, torch.Tensor]]
    token_lengths: list[int]  # per sample, in batch order, after truncation, padding excluded
    indices: list[int]  # original dataset index of each sample, in batch order

    @property
    def num_samples(self) -> int:
        return len(self.token_lengths)

    @property
    def padding_fraction(self) -> float:
        """Share of the token slots the model processes that are padding."""
        slots = sum(int(b["input_ids"].numel()) for b in self.inputs)
        return 1.0 - sum(self.token_lengths) / slots

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        """The distinct input shapes, each a graph or compiled kernel set for static-shape engines."""
        return sorted({tuple(b["input_ids"].shape) for b in self.inputs})

    def to(self, device: torch.device) -> Batches:
        """Move every batch to the device once (host-to-device copies stay out of the timed loops)."""
        moved = [{k: v.to(device, non_blocking=True) for k, v in b.items()} for b in self.inputs]
        return Batches(moved, self.token_lengths, self.indices)


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
    if path.suffix.lower() not in BUILDERS:
        raise ElaError(f"dataset file {path} has an unsupported type; use one of {', '.join(BUILDERS)}")
    return path


def load_split(cfg: DatasetConfig) -> EvalSplit:
    """Read the split through `datasets`, check columns and labels, apply `limit`."""
    import datasets

    datasets.disable_progress_bars()
    if cfg.path:
        path = local_file(cfg)
        builder, options = BUILDERS[path.suffix.lower()]
        source = str(path.resolve())
        try:
            ds = datasets.load_dataset(builder, data_files=str(path), split="train", **options)
        except (UnicodeDecodeError, ValueError, datasets.exceptions.DatasetGenerationError) as err:
            cause = err.__cause__ or err
            if "corresponds to no data" in str(cause):
                raise ElaError(f"dataset file {path} is empty (a header and no rows)") from err
            raise ElaError(f"could not read {path}: {type(cause).__name__}: {cause}") from err
    else:
        source = f"hub:{cfg.hub_id}/{cfg.hub_config or ''}:{cfg.split}"
        require_hub("dataset", cfg.hub_id, "dataset.path=/path/to/folder_or_file (or ELA_SST2_PATH)")
        try:
            ds = datasets.load_dataset(cfg.hub_id, cfg.hub_config, split=cfg.split)
        except Exception as err:  # offline, unknown ID, no such split: all need the same advice
            raise ElaError(
                f"could not load dataset {cfg.hub_id!r} ({cfg.hub_config}, split {cfg.split}) from the "
                f"Hugging Face Hub: {type(err).__name__}: {err}. Offline? Use a local copy: "
                "dataset.path=/path/to/folder_or_file (or ELA_SST2_PATH for dataset=sst2)"
            ) from err

    missing = [c for c in (cfg.text_column, cfg.label_column) if c not in ds.column_names]
    if missing:
        raise ElaError(
            f"dataset {source} has no column(s) {missing}; its columns are {ds.column_names}. "
            "Set dataset.text_column / dataset.label_column"
        )
    if cfg.limit:
        ds = ds.select(range(min(cfg.limit, len(ds))))
    if len(ds) == 0:
        raise ElaError(f"dataset {source} is empty")
    texts = [str(t) for t in ds[cfg.text_column]]
    labels = [_label_id(v, cfg, i) for i, v in enumerate(ds[cfg.label_column])]
    return EvalSplit(texts=texts, labels=labels, source=source)


def _label_id(value: object, cfg: DatasetConfig, row: int) -> int:
    names = cfg.label_names or []
    if isinstance(value, str) and value in names:
        return names.index(value)
    try:
        label = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ElaError(f"row {row}: label {value!r} is neither an integer nor one of {names}") from None
    if label < 0 or (names and label >= len(names)):
        raise ElaError(f"row {row}: label {label} is outside the dataset's labels {names}")
    return label


def bucket_for(longest: int, buckets: list[int] | None, max_length: int) -> int | None:
    """The padded length of a batch: the smallest bucket that fits, else max_length; None = its longest."""
    if not buckets:
        return None
    return next((b for b in sorted(buckets) if b >= longest), max(max_length, longest))


def tokenize(
    tokenizer, texts: list[str], batch: int, max_length: int, buckets: list[int] | None = None, order: str = "original"
) -> Batches:
    """Tokenize each text once, then batch in order (or by length), padding to the longest or a bucket."""
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    lengths = [len(ids) for ids in enc["input_ids"]]
    indices = list(range(len(texts)))
    if order == "by_length":
        indices.sort(key=lambda i: lengths[i])
    inputs = []
    for start in range(0, len(indices), batch):
        chunk = indices[start : start + batch]
        target = bucket_for(max(lengths[i] for i in chunk), buckets, max_length)
        features = [{k: enc[k][i] for k in enc} for i in chunk]
        padded = tokenizer.pad(
            features, padding="max_length" if target else "longest", max_length=target, return_tensors="pt"
        )
        inputs.append(dict(padded))
    return Batches(inputs=inputs, token_lengths=[lengths[i] for i in indices], indices=indices)
