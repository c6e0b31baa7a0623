"""Loading labelled splits from local TSV/CSV/JSON(L)/Parquet files (no `datasets`), and tokenizing them."""

from dataclasses import replace

import pandas as pd
import pytest
from conftest import MODEL, SST2
from transformers import AutoTokenizer

from ela import ElaError
from ela.config import DatasetConfig
from ela.runtime.data import label_targets, load_split, tokenize

SST2_MODEL = {0: "negative", 1: "positive"}

SST2_CFG = DatasetConfig(
    name="sst2",
    path=str(SST2),
    hub_id="nyu-mll/glue",
    hub_config="sst2",
    split="validation",
    local_file="dev.tsv",
    text_column="sentence",
    label_column="label",
    label_names=["negative", "positive"],
    label_map=None,
    limit=None,
    order="original",
)


def test_sst2_dev_from_the_local_folder():
    split = load_split(SST2_CFG)
    assert len(split.texts) == 872 and sum(split.labels) == 444  # README: 444 positive, 428 negative
    assert split.texts[0].startswith("it 's a charming and often affecting journey")
    assert split.labels[0] == 1 and split.source.endswith("dev.tsv")


def test_limit_takes_the_first_rows_in_order():
    split = load_split(replace(SST2_CFG, limit=5))
    assert split.texts == load_split(SST2_CFG).texts[:5]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet", ".tsv"])
def test_other_file_types(tmp_path, suffix):
    df = pd.DataFrame({"text": ["good film", "bad film", "fine"], "label": [1, 0, 1]})
    path = tmp_path / f"data{suffix}"
    {
        ".csv": lambda: df.to_csv(path, index=False),
        ".tsv": lambda: df.to_csv(path, index=False, sep="\t"),
        ".jsonl": lambda: df.to_json(path, orient="records", lines=True),
        ".parquet": lambda: df.to_parquet(path),
    }[suffix]()
    cfg = replace(SST2_CFG, path=str(path), text_column="text", local_file=None)
    split = load_split(cfg)
    assert split.texts == ["good film", "bad film", "fine"] and split.labels == [1, 0, 1]


def test_text_files_read_as_pandas_reads_them(tmp_path):
    """Quoted csv fields keep their commas and newlines, blank lines are skipped, a JSON array is records."""
    csv_file = tmp_path / "q.csv"
    csv_file.write_text('text,label\n"good, and\nlong",1\n\n"bad",0\n', encoding="utf-8")
    json_file = tmp_path / "a.json"
    json_file.write_text('[{"text": "x", "label": 1}, {"text": "y", "label": 0}]', encoding="utf-8")
    cfg = replace(SST2_CFG, text_column="text", local_file=None)
    read = {p.suffix: load_split(replace(cfg, path=str(p))) for p in (csv_file, json_file)}
    assert read[".csv"].texts == ["good, and\nlong", "bad"] and read[".csv"].labels == [1, 0]
    assert read[".json"].texts == ["x", "y"] and read[".json"].labels == [1, 0]
    assert not list(tmp_path.glob("**/*.arrow"))  # nothing cached beside or under the data


def test_string_labels_map_through_label_names(tmp_path):
    path = tmp_path / "d.jsonl"
    pd.DataFrame({"sentence": ["a", "b"], "label": ["positive", "negative"]}).to_json(
        path, orient="records", lines=True
    )
    split = load_split(replace(SST2_CFG, path=str(path)))
    assert split.labels == ["positive", "negative"]  # as the file has them
    assert label_targets(split.labels, SST2_CFG, SST2_MODEL) == [1, 0]


def test_labels_that_are_the_models_names_need_no_label_names():
    cfg = replace(SST2_CFG, label_names=None)
    assert label_targets(["Positive", "negative"], cfg, SST2_MODEL) == [1, 0]


def test_other_label_words_map_through_label_map_and_the_error_shows_how():
    cfg = replace(SST2_CFG, label_names=None)
    with pytest.raises(ElaError, match=r"label 'neg' is neither.*dataset.label_map=\{neg: negative, pos: positive\}"):
        label_targets(["neg", "pos"], cfg, SST2_MODEL)
    mapped = replace(cfg, label_map={"neg": "negative", "pos": "positive"})
    assert label_targets(["pos", "neg", "pos"], mapped, SST2_MODEL) == [1, 0, 1]
    with pytest.raises(ElaError, match="'meh' is not a key of dataset.label_map"):
        label_targets(["meh"], mapped, SST2_MODEL)
    with pytest.raises(ElaError, match="maps 'pos' to 'good', which is not one of the model's labels"):
        label_targets(["pos"], replace(cfg, label_map={"pos": "good"}), SST2_MODEL)


def test_a_limit_above_the_split_is_said_not_silent():
    split = load_split(replace(SST2_CFG, limit=5000))
    assert len(split.texts) == split.rows == 872
    assert split.warnings(5000) == [f"dataset.limit=5000 exceeds the 872 rows of {split.source}: all 872 are used"]
    assert split.warnings(10) == [] and split.warnings(None) == []


@pytest.mark.parametrize(
    "content, message",
    [
        (b"sentence\tscore\ngood\t1\n", "no column"),
        (b"sentence\tlabel\ngood\t7\n", "outside the dataset's labels"),
        (b"sentence\tlabel\ngood\tmaybe\n", "neither an integer"),
        (b"sentence\tlabel\n", "empty"),
        (b"sentence\tlabel\ncr\xe8me\t1\n", "could not read"),
        (b"sentence\tlabel\ngood\t1\tmore\n", "row 1 has 3 fields, the header has 2"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.tsv"
    path.write_bytes(content)
    with pytest.raises(ElaError, match=message):
        split = load_split(replace(SST2_CFG, path=str(path)))
        label_targets(split.labels, SST2_CFG, SST2_MODEL)  # labels are checked against the model's


def test_missing_path_and_unknown_type(tmp_path):
    with pytest.raises(ElaError, match="does not exist"):
        load_split(replace(SST2_CFG, path=str(tmp_path / "nope")))
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(ElaError, match="unsupported type"):
        load_split(replace(SST2_CFG, path=str(tmp_path / "d.xlsx")))


def test_hub_dataset_offline_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setattr("ela.runtime.hub.hub_reachable", lambda: False)  # as on a machine without network
    with pytest.raises(ElaError, match="Hub is unreachable.*dataset.path="):
        load_split(replace(SST2_CFG, path=None))


def test_tokenize_pads_each_batch_to_its_own_longest():
    tok = AutoTokenizer.from_pretrained(MODEL)
    texts = ["a", "a much longer sentence than the first one", "b c", "d"]
    batches = tokenize(tok, texts, batch=2, max_length=6)
    assert [b["input_ids"].shape for b in batches.inputs] == [(2, 6), (2, 4)]  # truncated at 6; dynamic padding
    assert batches.token_lengths == [3, 6, 4, 3] and batches.num_samples == 4


def test_the_inputs_digest_tells_batches_apart_and_takes_any_dtype():
    import torch

    from ela.runtime.data import Batches

    def batches(ids, dtype=torch.long, indices=(0, 1)):
        return Batches([{"input_ids": torch.tensor(ids, dtype=dtype)}], token_lengths=[2, 2], indices=list(indices))

    same = batches([[1, 2], [3, 4]])
    assert same.digest == batches([[1, 2], [3, 4]]).digest  # a reference kept for these inputs serves equal ones
    assert same.digest != batches([[1, 2], [3, 5]]).digest  # one token differs
    assert same.digest != batches([[1, 2], [3, 4]], indices=(1, 0)).digest  # the same tensors, other samples
    assert same.digest != batches([[1, 2, 3, 4]]).digest  # the same values, another shape
    half = batches([[0.5, 1.0]], dtype=torch.bfloat16)  # numpy has no bfloat16: hashed as raw bytes
    assert half.digest != batches([[0.5, 1.0]], dtype=torch.float16).digest
