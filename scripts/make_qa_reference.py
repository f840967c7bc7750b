"""Record reference outputs of transformers 4.x ``pipeline("question-answering")``.

Run with the transformers-4.x venv (see scripts/README-qa-reference.md):

    .venv-ref/bin/python scripts/make_qa_reference.py [--models-root /tmp/assay-ref-models]
        [--out tests/fixtures/qa_reference.json]

Models are built with tests/model_factory.py (works under transformers 4.x and 5.x).
Questions are chosen deterministically: every k-th XQuAD question, and every k-th question of
COVID-QA articles whose context is far longer than 512 tokens (doc-stride windows are used).
For every question the default pipeline output is recorded, plus top_k=3, max_answer_len=5 and
handle_impossible_answer=True; a few questions are also paired with an unrelated context.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import model_factory  # noqa: E402

DATA = model_factory.DATA / "qa"
N_XQUAD = 40
N_COVID = 25
N_UNRELATED = 6
MODELS = ("minilm-qa", "tiny-roberta-qa")
OPTION_SETS = ({}, {"top_k": 3}, {"max_answer_len": 5}, {"handle_impossible_answer": True})


def squad_questions(path: Path, dataset: str):
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    out = []
    for a_i, art in enumerate(data):
        for p_i, para in enumerate(art["paragraphs"]):
            for qa in para["qas"]:
                out.append(
                    {
                        "question": qa["question"],
                        "context": para["context"],
                        "context_source": {
                            "dataset": dataset,
                            "article": a_i,
                            "title": art.get("title", para.get("document_id")),
                            "paragraph": p_i,
                            "question_id": str(qa["id"]),
                        },
                        "gold": [x["text"] for x in qa["answers"]],
                    }
                )
    return out


def pick_cases():
    xq = squad_questions(DATA / "xquad.en.json", "xquad.en")
    step = len(xq) // N_XQUAD
    cases = [xq[i * step] for i in range(N_XQUAD)]
    cv = squad_questions(DATA / "covidqa.json", "covidqa")
    # Long but not huge contexts (~1,000-3,000 tokens): several doc-stride windows, cheap to run.
    cv = [c for c in cv if 4000 <= len(c["context"]) <= 12000]
    step = max(1, len(cv) // N_COVID)
    cases += [cv[i * step] for i in range(N_COVID)]
    # Questions paired with an unrelated context: the null answer may win.
    for j in range(N_UNRELATED):
        q = xq[j * 97 + 3]
        other = xq[(j * 97 + 3 + 600) % len(xq)]
        cases.append(
            {
                "question": q["question"],
                "context": other["context"],
                "context_source": dict(other["context_source"], unrelated_to_question=q["context_source"]),
                "gold": [],
            }
        )
    return cases


def to_jsonable(x):
    if isinstance(x, list):
        return [to_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {k: (float(v) if k == "score" else int(v) if k in ("start", "end") else v) for k, v in x.items()}
    return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-root", default="/tmp/assay-ref-models")
    ap.add_argument("--out", default=str(ROOT / "tests" / "fixtures" / "qa_reference.json"))
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import pipeline

    torch.set_num_threads(2)
    cases = pick_cases()
    result = {
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "factory_version": model_factory.FACTORY_VERSION,
        "generated_by": "scripts/make_qa_reference.py",
        "models": [],
    }
    for name in MODELS:
        folder = model_factory.build_test_model(Path(args.models_root), name)
        qa = pipeline("question-answering", model=str(folder), tokenizer=str(folder), device=-1)
        out_cases = []
        t0 = time.time()
        for case in cases:
            for opts in OPTION_SETS:
                expected = qa(question=case["question"], context=case["context"], **opts)
                out_cases.append(
                    {
                        "question": case["question"],
                        "context": case["context"],
                        "context_source": case["context_source"],
                        "gold_answers": case["gold"],
                        "options": opts,
                        "expected": to_jsonable(expected),
                    }
                )
        dt = time.time() - t0
        print(f"{name}: {len(out_cases)} pipeline calls in {dt:.1f}s", flush=True)
        result["models"].append(
            {
                "model": name,
                "transformers_version": transformers.__version__,
                "max_seq_len": int(min(qa.tokenizer.model_max_length, 384)),
                "pipeline_seconds": round(dt, 1),
                "cases": out_cases,
            }
        )
    Path(args.out).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
