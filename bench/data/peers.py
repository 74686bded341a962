"""The peers of bench/data/run.sh, on the same input as yiflow's data_bench example.

    peers.py datatrove INPUT_DIR WORK_DIR WORKERS   # the filter pipeline, as datatrove writes it
    peers.py bpe INPUT_DIR YIFLOW_TOKENIZER_JSON VOCAB OUT_JSON
    peers.py tokenize INPUT_DIR TOKENIZER_JSON

Each prints one JSON line of timings. INPUT_DIR is a yiflow document folder (documents/*.jsonl).
"""

import glob
import json
import os
import sys
import time


def patch_nltk():
    """datatrove's English word tokenizer is NLTK's `word_tokenize`, whose sentence splitter needs the
    punkt data from the internet, which this machine cannot reach. `preserve_line=True` skips the
    sentence split (less work, so this only makes datatrove faster) and needs no download."""
    from datatrove.utils import word_tokenizers
    from nltk.tokenize import word_tokenize

    def tokenize(self, text):
        return word_tokenizers.strip_strings(word_tokenize(text, language=self.language, preserve_line=True))

    word_tokenizers.NLTKTokenizer.word_tokenize = tokenize


def documents(input_dir):
    return sorted(glob.glob(os.path.join(input_dir, "documents", "*.jsonl")))


def texts(input_dir):
    for path in documents(input_dir):
        with open(path, encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)["text"]


def run_datatrove(input_dir, work, workers):
    patch_nltk()
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    docs = os.path.join(input_dir, "documents")
    tasks = max(workers, len(documents(input_dir)))
    config = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8)
    logs = os.path.join(work, "logs")
    stages = [
        # Quality, repetition and PII, written out for the MinHash stages to read.
        LocalPipelineExecutor(
            pipeline=[
                JsonlReader(docs, glob_pattern="*.jsonl"),
                GopherRepetitionFilter(),
                GopherQualityFilter(),
                PIIFormatter(),
                JsonlWriter(os.path.join(work, "filtered"), compression=None),
            ],
            tasks=tasks, workers=workers, logging_dir=os.path.join(logs, "1"),
        ),
        LocalPipelineExecutor(
            pipeline=[
                JsonlReader(os.path.join(work, "filtered")),
                MinhashDedupSignature(output_folder=os.path.join(work, "signatures"), config=config),
            ],
            tasks=tasks, workers=workers, logging_dir=os.path.join(logs, "2"),
        ),
        LocalPipelineExecutor(
            pipeline=[
                MinhashDedupBuckets(
                    input_folder=os.path.join(work, "signatures"),
                    output_folder=os.path.join(work, "buckets"),
                    config=config,
                ),
            ],
            tasks=config.num_buckets, workers=workers, logging_dir=os.path.join(logs, "3"),
        ),
        LocalPipelineExecutor(
            pipeline=[
                MinhashDedupCluster(
                    input_folder=os.path.join(work, "buckets"),
                    output_folder=os.path.join(work, "remove_ids"),
                    config=config,
                ),
            ],
            tasks=1, workers=1, logging_dir=os.path.join(logs, "4"),
        ),
        LocalPipelineExecutor(
            pipeline=[
                JsonlReader(os.path.join(work, "filtered")),
                MinhashDedupFilter(input_folder=os.path.join(work, "remove_ids")),
                JsonlWriter(os.path.join(work, "output"), compression=None),
            ],
            tasks=tasks, workers=workers, logging_dir=os.path.join(logs, "5"),
        ),
    ]
    start = time.perf_counter()
    for stage in stages:
        stage.run()
    seconds = time.perf_counter() - start
    kept = sum(1 for path in glob.glob(os.path.join(work, "output", "*.jsonl")) for _ in open(path))
    mb = sum(len(t.encode("utf-8")) for t in texts(input_dir)) / 1e6
    print(json.dumps({"seconds": seconds, "mb": mb, "mb_per_s": mb / seconds, "docs_kept": kept}))


def run_bpe(input_dir, yiflow_tokenizer, vocab, out):
    """Trains with the settings yiflow's bpe kind uses (its pre-tokenizer pattern is read from its file)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    with open(yiflow_tokenizer, encoding="utf-8") as f:
        config = json.load(f)
    pattern = config["pre_tokenizer"]["pattern"]["Regex"]
    specials = [t["content"] for t in config["added_tokens"]]
    start = time.perf_counter()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False)
    tokenizer.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab - 256,
        min_frequency=2,
        limit_alphabet=vocab // 4,
        special_tokens=specials,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts(input_dir), trainer=trainer)
    seconds = time.perf_counter() - start
    tokenizer.save(out)
    print(json.dumps({"seconds": seconds, "vocab": tokenizer.get_vocab_size()}))


def run_tokenize(input_dir, tokenizer_file):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(tokenizer_file)
    start = time.perf_counter()
    batch, tokens, size = [], 0, 0
    for text in texts(input_dir):
        batch.append(text)
        size += len(text.encode("utf-8"))
        if len(batch) == 1000:
            tokens += sum(len(e.ids) for e in tokenizer.encode_batch_fast(batch, add_special_tokens=False))
            batch = []
    if batch:
        tokens += sum(len(e.ids) for e in tokenizer.encode_batch_fast(batch, add_special_tokens=False))
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "mb": size / 1e6, "mb_per_s": size / 1e6 / seconds, "tokens": tokens}))


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "datatrove":
        run_datatrove(args[0], args[1], int(args[2]))
    elif command == "bpe":
        run_bpe(args[0], args[1], int(args[2]), args[3])
    elif command == "tokenize":
        run_tokenize(args[0], args[1])
    else:
        sys.exit(__doc__)
