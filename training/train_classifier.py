"""Train a built-in sequence classifier: ``sentiment`` (SST-2), ``nli`` (SNLI) or ``question-type`` (TREC).

    python -m training.train_classifier sentiment [--epochs E] [--time-limit S] [--no-publish]

Trains LoRA adapters and a new head on the packaged all-MiniLM-L6-v2 (CPU, bf16 autocast, seeded), evaluates
the assembled model on held-out data through Assay's own serving code (float32 and bfloat16), then publishes
it into src/assay/builtin (weights, catalog entry with checksums and metrics, model card).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from assay.builtin import BuiltinModel
from training import datasets
from training.common import TrainSettings, base, export, pad, seed_everything, train, with_lora
from training.evaluate import classification_accuracy
from training.publish import assemble_candidate, card, publish


@dataclass
class Recipe:
    """What one built-in classifier trains on and how."""

    labels: list[str]
    train: datasets.Labelled
    evaluate: datasets.Labelled
    settings: TrainSettings
    description: str
    data: str
    eval_data: str
    limits: str
    #: Longest training sequence in tokens.
    max_length: int = 128


def recipe(name: str) -> Recipe:
    if name == "sentiment":
        return Recipe(
            labels=["negative", "positive"], train=datasets.sst2("train"), evaluate=datasets.sst2("dev"),
            settings=TrainSettings(epochs=1, learning_rate=5e-4, batch_size=32, rank=16),
            description="Binary sentiment of English text (SST-2): negative or positive.",
            data="SST-2 train (GLUE, 67,349 phrases and sentences of movie reviews; released for research by its "
                 "authors)",
            eval_data="SST-2 dev (872 sentences)",
            limits="Movie-review English; short texts. Neutral or mixed text is forced into one of two classes.",
            max_length=66,
        )
    if name == "nli":
        return Recipe(
            labels=datasets.NLI_LABELS, train=datasets.snli("dev"), evaluate=datasets.snli("test"),
            settings=TrainSettings(epochs=3, learning_rate=5e-4, batch_size=32, rank=16),
            description="Natural language inference (SNLI): does the premise entail, contradict or not decide the "
                        "hypothesis? Serves zero-shot classification (`/zero_shot`).",
            data="SNLI dev set (9,842 premise/hypothesis pairs; CC BY-SA 4.0)",
            eval_data="SNLI test set (9,824 pairs)",
            limits="Trained on ~10k image-caption pairs only: far below models trained on MNLI/SNLI in full. "
                   "Zero-shot labels work best as short, concrete hypotheses.",
        )
    if name == "question-type":
        return Recipe(
            labels=datasets.TREC_LABELS, train=datasets.trec("train"), evaluate=datasets.trec("test"),
            settings=TrainSettings(epochs=4, learning_rate=5e-4, batch_size=32, rank=16),
            description="The kind of answer an English question asks for (TREC coarse classes): ABBR abbreviation, "
                        "DESC description, ENTY entity, HUM human, LOC location, NUM numeric.",
            data="TREC question classification train set (5,452 questions; research use)",
            eval_data="TREC test set (500 questions)",
            limits="Short factoid questions in English; six coarse classes only.",
        )
    raise SystemExit(f"unknown model '{name}': sentiment, nli or question-type")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=["sentiment", "nli", "question-type"])
    parser.add_argument("--epochs", type=float)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--rank", type=int)
    parser.add_argument("--time-limit", type=float, default=25 * 60, help="seconds of training at most")
    parser.add_argument("--no-publish", action="store_true", help="train and evaluate only")
    args = parser.parse_args(argv)
    r = recipe(args.name)
    settings = r.settings
    for field in ("epochs", "learning_rate", "rank"):
        if getattr(args, field) is not None:
            setattr(settings, field, getattr(args, field))
    if args.rank is not None:
        settings.alpha = settings.rank * 2
    settings.time_limit_s = args.time_limit
    seed_everything(settings.seed)
    started = time.monotonic()

    tokenizer = AutoTokenizer.from_pretrained(base())
    id2label = dict(enumerate(r.labels))
    model = AutoModelForSequenceClassification.from_pretrained(
        base(), num_labels=len(r.labels), id2label=id2label, label2id={v: k for k, v in id2label.items()})
    model = with_lora(model, settings, head=["classifier", "pooler"])
    encoded = tokenizer(r.train.texts, r.train.pairs, truncation=True, max_length=r.max_length)
    ids, types = encoded["input_ids"], encoded["token_type_ids"]
    labels = torch.tensor(r.train.labels)

    def make_batch(batch: list[int]) -> dict[str, torch.Tensor]:
        input_ids = pad([ids[i] for i in batch])
        return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long(),
                "token_type_ids": pad([types[i] for i in batch]), "labels": labels[batch]}

    run = train(model, [len(x) for x in ids], make_batch, settings)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / f"{args.name}.safetensors"
        export(model, settings, weights)
        entry = BuiltinModel(name=args.name, task="classification", description=r.description,
                             architecture="BertForSequenceClassification",
                             id2label={str(i): label for i, label in id2label.items()})
        folder = Path(tmp) / "assembled"
        assemble_candidate(entry, weights, folder)
        metrics = {f"accuracy_{dtype}": round(classification_accuracy(str(folder), r.evaluate, dtype), 4)
                   for dtype in ("float32", "bfloat16")}
        metrics["eval_examples"] = len(r.evaluate.labels)
        print(f"{args.name}: {metrics}", flush=True)
        run["total_seconds"] = round(time.monotonic() - started, 1)
        if args.no_publish:
            return 0
        command = "python -m training.train_classifier " + " ".join(argv if argv is not None else sys.argv[1:])
        text = card(
            name=args.name, description=r.description, task="classification",
            architecture=entry.architecture, size_mb=weights.stat().st_size / 1e6,
            labels="; labels " + ", ".join(f"{i}: {label}" for i, label in id2label.items()),
            data=r.data, eval_data=r.eval_data, command=command.strip(), settings=settings.as_dict(), run=run,
            metrics="\n".join(f"- {k}: {v}" for k, v in metrics.items()), limits=r.limits,
        )
        publish(BuiltinModel(**{**entry.__dict__, "metrics": {**metrics, "training": run}}), weights, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
