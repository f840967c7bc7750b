"""Train the built-in extractive QA model on XQuAD (English) and COVID-QA.

    python -m training.train_qa [--epochs E] [--negatives R] [--no-covid] [--no-publish]

XQuAD is split by article: the last 10 articles (in file order) are held out for evaluation and never trained
on. Contexts are cut into the same windows the server uses (384 tokens, stride 128, question first); a window
without the answer is trained to point at [CLS] (the null answer), and at most ``--negatives`` of those are kept
per question, since long COVID-QA articles would otherwise drown the answers in empty windows.
Evaluation runs the assembled model through Assay's own QA adapter (the transformers pipeline's decoding).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from assay.builtin import BuiltinModel
from training import datasets
from training.common import TrainSettings, base, export, pad, seed_everything, train, with_lora
from training.evaluate import qa_answers, squad_scores
from training.publish import assemble_candidate, card, publish

MAX_LEN = 384
STRIDE = 128


def windows(tokenizer, questions: list[datasets.Question], negatives: int, rng: random.Random):
    """(input_ids, token_type_ids, start, end) per kept window; start = end = 0 for a window without the answer.

    Every window holding the answer is kept, and at most ``negatives`` answerless windows per question.
    """
    encoded = tokenizer([q.question for q in questions], [q.context for q in questions], truncation="only_second",
                        max_length=MAX_LEN, stride=STRIDE, return_overflowing_tokens=True,
                        return_offsets_mapping=True)
    rows, answerless = [], {}
    for w, owner in enumerate(encoded["overflow_to_sample_mapping"]):
        q = questions[owner]
        answer_start, answer_end = q.answer_start, q.answer_start + len(q.answers[0])
        sequence = encoded.sequence_ids(w)
        offsets = encoded["offset_mapping"][w]
        context = [j for j, s in enumerate(sequence) if s == 1]
        row = (encoded["input_ids"][w], encoded["token_type_ids"][w], 0, 0)
        if context and offsets[context[0]][0] <= answer_start and offsets[context[-1]][1] >= answer_end:
            start = next(j for j in context if offsets[j][1] > answer_start)
            end = next(j for j in reversed(context) if offsets[j][0] < answer_end)
            rows.append((row[0], row[1], start, end))
        else:
            answerless.setdefault(owner, []).append(row)
    for owner in sorted(answerless):
        rows.extend(rng.sample(answerless[owner], min(negatives, len(answerless[owner]))))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--negatives", type=int, default=1, help="answerless windows kept per question")
    parser.add_argument("--no-covid", action="store_true", help="train on XQuAD only")
    parser.add_argument("--time-limit", type=float, default=25 * 60, help="seconds of training at most")
    parser.add_argument("--no-publish", action="store_true", help="train and evaluate only")
    args = parser.parse_args(argv)
    settings = TrainSettings(epochs=args.epochs, learning_rate=args.learning_rate, rank=args.rank,
                             alpha=2 * args.rank, batch_size=16, time_limit_s=args.time_limit)
    seed_everything(settings.seed)
    started = time.monotonic()
    rng = random.Random(settings.seed)

    train_questions, held_out = datasets.xquad_split()
    covid = [] if args.no_covid else datasets.squad("covidqa")
    tokenizer = AutoTokenizer.from_pretrained(base())
    rows = windows(tokenizer, train_questions + covid, args.negatives, rng)
    print(f"{len(train_questions)} XQuAD + {len(covid)} COVID-QA questions -> {len(rows)} windows "
          f"({sum(1 for r in rows if r[2] == 0)} without the answer); {len(held_out)} held-out questions",
          flush=True)
    model = with_lora(AutoModelForQuestionAnswering.from_pretrained(base()), settings, head=["qa_outputs"])

    def make_batch(batch: list[int]) -> dict[str, torch.Tensor]:
        input_ids = pad([rows[i][0] for i in batch])
        return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long(),
                "token_type_ids": pad([rows[i][1] for i in batch]),
                "start_positions": torch.tensor([rows[i][2] for i in batch]),
                "end_positions": torch.tensor([rows[i][3] for i in batch])}

    run = train(model, [len(r[0]) for r in rows], make_batch, settings)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "qa.safetensors"
        export(model, settings, weights)
        entry = BuiltinModel(
            name="qa", task="question_answering", architecture="BertForQuestionAnswering",
            description="Extractive question answering in English: the span of the context that answers the "
                        "question. A small demonstration model, far from the accuracy of a model trained on SQuAD.")
        folder = Path(tmp) / "assembled"
        assemble_candidate(entry, weights, folder)
        metrics = {}
        for dtype in ("float32", "bfloat16"):
            scores = squad_scores(qa_answers(str(folder), held_out, dtype), held_out)
            metrics[f"f1_{dtype}"] = round(scores["f1"], 4)
            metrics[f"exact_match_{dtype}"] = round(scores["exact_match"], 4)
        metrics["eval_questions"] = len(held_out)
        print(f"qa: {metrics}", flush=True)
        run["total_seconds"] = round(time.monotonic() - started, 1)
        if args.no_publish:
            return 0
        command = "python -m training.train_qa " + " ".join(argv if argv is not None else sys.argv[1:])
        text = card(
            name="qa", description=entry.description, task="question_answering", architecture=entry.architecture,
            size_mb=weights.stat().st_size / 1e6,
            data=f"XQuAD English (CC BY-SA 4.0) without its last 10 articles ({len(train_questions)} questions)"
                 + ("" if args.no_covid else f" and COVID-QA (Apache-2.0, {len(covid)} questions)"),
            eval_data=f"the last 10 XQuAD English articles ({len(held_out)} questions), SQuAD v1.1 metrics",
            command=command.strip(), settings={**settings.as_dict(), "negatives": args.negatives,
                                              "max_len": MAX_LEN, "stride": STRIDE}, run=run,
            metrics="\n".join(f"- {k}: {v}" for k, v in metrics.items()),
            limits="A small demonstration model: trained on about two thousand questions, it finds the right "
                   "span far less often than SQuAD-trained models. Use a real QA model (for example "
                   "deepset/roberta-base-squad2) for anything that matters.",
        )
        publish(BuiltinModel(**{**entry.__dict__, "metrics": {**metrics, "training": run}}), weights, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
