"""A RoBERTa-base-shaped classifier with random weights (placement and memory tests only: accuracy is chance).

python benchmarks/random_model.py OUT_DIR   # run from the repo root on the GPU machine (.device/tokenizer)
"""

import sys

from transformers import BertTokenizerFast, RobertaConfig, RobertaForSequenceClassification

tok = BertTokenizerFast.from_pretrained(".device/tokenizer")
cfg = RobertaConfig(
    vocab_size=tok.vocab_size,
    pad_token_id=tok.pad_token_id,
    type_vocab_size=1,
    max_position_embeddings=514,
    num_labels=2,
)
m = RobertaForSequenceClassification(cfg)
m.save_pretrained(sys.argv[1])
tok.save_pretrained(sys.argv[1])
print("random-weight RoBERTa-base-shaped model saved")
