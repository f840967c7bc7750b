"""Readers for the public datasets in ../shared/data (see its README for sources and licences)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

#: ../shared/data beside the checkout, or ASSAY_SHARED_DATA.
DATA = Path(os.environ.get("ASSAY_SHARED_DATA", Path(__file__).resolve().parent.parent.parent / "shared" / "data"))

NLI_LABELS = ["entailment", "neutral", "contradiction"]
TREC_LABELS = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]


@dataclass
class Labelled:
    """Texts (or text pairs) with integer labels."""

    texts: list[str]
    labels: list[int]
    #: Second texts of pairs, or None.
    pairs: list[str] | None = None


def sst2(split: str) -> Labelled:
    """``train`` (train.tsv + train-extra.tsv: the full GLUE train set) or ``dev``."""
    files = ["train.tsv", "train-extra.tsv"] if split == "train" else ["dev.tsv"]
    texts, labels = [], []
    for name in files:
        lines = (DATA / "sst2" / name).read_text(encoding="utf-8").splitlines()[1:]
        for line in lines:
            sentence, label = line.rsplit("\t", 1)
            texts.append(sentence.strip())
            labels.append(int(label))
    return Labelled(texts, labels)


def snli(split: str) -> Labelled:
    """``dev`` or ``test``: premise, hypothesis and one of entailment / neutral / contradiction."""
    folder = DATA / "snli"
    premises = (folder / f"s1.{split}").read_text(encoding="utf-8").splitlines()
    hypotheses = (folder / f"s2.{split}").read_text(encoding="utf-8").splitlines()
    labels = (folder / f"labels.{split}").read_text(encoding="utf-8").splitlines()
    keep = [i for i, label in enumerate(labels) if label in NLI_LABELS]
    return Labelled([premises[i].strip() for i in keep], [NLI_LABELS.index(labels[i]) for i in keep],
                    [hypotheses[i].strip() for i in keep])


def trec(split: str) -> Labelled:
    """``train`` (Latin-1) or ``test``: the six coarse question classes."""
    encoding = "latin-1" if split == "train" else "utf-8"
    texts, labels = [], []
    for line in (DATA / "trec" / f"{split}.txt").read_text(encoding=encoding).splitlines():
        if not line.strip():
            continue
        tag, question = line.split(" ", 1)
        texts.append(question.strip())
        labels.append(TREC_LABELS.index(tag.split(":")[0]))
    return Labelled(texts, labels)


@dataclass
class Question:
    """One SQuAD-format question with its context and gold answers."""

    id: str
    #: The article (title) it belongs to: held-out splits are by article.
    article: str
    question: str
    context: str
    #: Gold answer texts.
    answers: list[str]
    #: Character offset of the first gold answer.
    answer_start: int


def squad(name: str) -> list[Question]:
    """``xquad.en`` or ``covidqa`` from ../shared/data/qa."""
    data = json.loads((DATA / "qa" / f"{name}.json").read_text(encoding="utf-8"))["data"]
    out = []
    for article in data:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                if qa.get("is_impossible") or not qa["answers"]:
                    continue
                out.append(Question(str(qa["id"]), f"{name}:{article.get('title', '')}", qa["question"],
                                    paragraph["context"], [a["text"] for a in qa["answers"]],
                                    qa["answers"][0]["answer_start"]))
    return out


def xquad_split(held_out_articles: int = 10) -> tuple[list[Question], list[Question]]:
    """XQuAD English split by article: the last ``held_out_articles`` articles (in file order) are held out."""
    questions = squad("xquad.en")
    articles = list(dict.fromkeys(q.article for q in questions))
    held = set(articles[-held_out_articles:])
    return [q for q in questions if q.article not in held], [q for q in questions if q.article in held]
