#!/usr/bin/env python3
"""Reference embeddings with the Python onnxruntime and tokenizers packages.

The Rust engine (appliance/inference) is checked against this script, which runs the same
model.onnx and tokenizer.json the way a typical Python user script does: batches of 32
texts in input order, each padded to its longest text, truncation at 256 tokens, mean
pooling weighted by the attention mask, L2 normalisation (sentence-transformers' recipe
for all-MiniLM-L6-v2).

    embed-reference.py --model-dir DIR [--threads N] [--batch-size 32] [--bench]

Reads JSON {"texts": [...]} on stdin. Writes JSON on stdout:
  - by default {"embeddings": [[...], ...], "versions": {...}}, one vector per text;
  - with --bench, {"texts": n, "seconds": s, "cpu_seconds": c, "sentences_per_second": r,
    "versions": {...}}: the wall-clock and CPU time (all threads) of embedding every text
    once, tokenizing included, after one warm-up batch.

Run by appliance/inference's tests and benchmark, in the virtual environment that
scripts/python-reference-env makes.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import onnxruntime
import tokenizers

MAX_TOKENS = 256


def load(model_dir, threads):
    tokenizer = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    # The file pads every text to 128 and truncates at 128; pad to the batch's longest
    # and cut at 256 instead, like the Rust engine.
    tokenizer.no_padding()
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    session = onnxruntime.InferenceSession(
        os.path.join(model_dir, "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    return tokenizer, session


def embed_batch(tokenizer, session, texts):
    encodings = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    hidden = session.run(["last_hidden_state"], feeds)[0]
    weights = mask[:, :, None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    return pooled / norms


def embed(tokenizer, session, texts, batch_size):
    batches = [
        embed_batch(tokenizer, session, texts[i : i + batch_size])
        for i in range(0, len(texts), batch_size)
    ]
    return np.concatenate(batches) if batches else np.zeros((0, 384), dtype=np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: ONNX Runtime decides)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--bench", action="store_true")
    args = parser.parse_args()

    texts = json.load(sys.stdin)["texts"]
    tokenizer, session = load(args.model_dir, args.threads)
    versions = {
        "onnxruntime": onnxruntime.__version__,
        "tokenizers": tokenizers.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }

    if args.bench:
        embed_batch(tokenizer, session, texts[: args.batch_size])  # warm-up
        cpu_started = time.process_time()
        started = time.perf_counter()
        embed(tokenizer, session, texts, args.batch_size)
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
        result = {
            "texts": len(texts),
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "sentences_per_second": len(texts) / seconds,
            "versions": versions,
        }
    else:
        vectors = embed(tokenizer, session, texts, args.batch_size)
        result = {"embeddings": vectors.astype(np.float64).tolist(), "versions": versions}
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
