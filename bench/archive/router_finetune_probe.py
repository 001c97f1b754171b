"""Probe: does fine-tuning MiniLM end to end on the outcomes beat frozen MiniLM + logistic?

    python -m bench.archive.router_finetune_probe --source routellm-mmlu --seeds 0 1 2 --save-scores
    python -m bench.archive.router_finetune_probe --source routellm-mmlu --seeds 1 2 --stack   # after --save-scores

Same seeded splits as bench/router/eval_all.py. On the training half only: a
15% validation part picks the epoch; the encoder (all-MiniLM-L6-v2, mean
pooled) and a linear head per model are trained on the rest with masked BCE on
each model's score (plus, where rows carry a task, a task-classification head as
a regulariser). Scored on the held-out half by the predicted gain
P(strong right) - P(weak right), against the frozen-embedding gain logistic of
bench/archive/router_signal_probes.py on the same split (C by CV on the training half).
``--stack`` trains the shipped default router on the same split and scores it alone
and z-averaged with the saved fine-tuned gains. Results: bench/results/router/FINETUNE.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from contracts.environment import apply_environment_defaults
from bench.archive.router_signal_probes import cv_c, gain_logistic
from bench.router.splits import ensure_split, pgr_point, split, strong_weak
from router.features.cache import default_cache_dir
from router.features.sentence import (
    SentenceEmbedder,
    resolve_model_path,
    set_torch_threads,
)
from router.lab import metrics
from router.lab.matrix import OutcomeMatrix
from router.lab.outcomes import read_outcomes


def tasks_of(source: str, seed: int, prompts: list[str]) -> list[str] | None:
    where = ensure_split(source, seed, default_cache_dir() / "bench")
    task = {r.prompt: r.task for r in read_outcomes(where / "train.jsonl")}
    out = [task.get(p) for p in prompts]
    return None if any(t is None for t in out) else [str(t) for t in out]


class FineTuner:
    """MiniLM + per-model logit head (+ optional task head), trained with AdamW."""

    def __init__(self, n_models: int, n_tasks: int, lr: float, head_lr: float, epochs: float,
                 batch_size: int, max_tokens: int, task_weight: float, seed: int) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.manual_seed(seed)
        path = resolve_model_path("all-MiniLM-L6-v2")
        self.tok = AutoTokenizer.from_pretrained(path)
        self.enc = AutoModel.from_pretrained(path)
        self.head = torch.nn.Linear(self.enc.config.hidden_size, n_models)
        self.task_head = torch.nn.Linear(self.enc.config.hidden_size, n_tasks) if n_tasks else None
        self.lr, self.head_lr, self.epochs = lr, head_lr, epochs
        self.batch_size, self.max_tokens, self.task_weight = batch_size, max_tokens, task_weight
        self.rng = np.random.default_rng(seed)

    def _encode(self, texts: list[str]):  # type: ignore[no-untyped-def]
        import torch

        batch = self.tok(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        out = self.enc(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return torch.nn.functional.normalize(pooled, dim=-1) * 8.0  # a fixed scale so the head starts in a sane range

    def predict(self, prompts: list[str]) -> np.ndarray:
        import torch

        self.enc.eval()
        order = np.argsort([len(p) for p in prompts])
        out = np.zeros((len(prompts), self.head.out_features), dtype=np.float64)
        with torch.no_grad():
            for i in range(0, len(prompts), 64):
                idx = order[i:i + 64]
                out[idx] = torch.sigmoid(self.head(self._encode([prompts[j] for j in idx]))).numpy()
        return out

    def fit(self, prompts: list[str], score: np.ndarray, mask: np.ndarray, tasks: np.ndarray | None,
            validate: Callable[[FineTuner], float]) -> list[tuple[float, float]]:
        import torch

        params = [{"params": self.enc.parameters(), "lr": self.lr},
                  {"params": self.head.parameters(), "lr": self.head_lr}]
        if self.task_head is not None:
            params.append({"params": self.task_head.parameters(), "lr": self.head_lr})
        opt = torch.optim.AdamW(params, weight_decay=0.01)
        n = len(prompts)
        steps_per_epoch = int(np.ceil(n / self.batch_size))
        total = int(np.ceil(self.epochs * steps_per_epoch))
        warm = max(1, int(0.06 * total))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
        y = torch.tensor(np.nan_to_num(score), dtype=torch.float32)
        m = torch.tensor(mask, dtype=torch.float32)
        history: list[tuple[float, float]] = []
        best = (-np.inf, None)
        step = 0
        check_every = max(1, steps_per_epoch // 2)
        lengths = np.array([len(p) for p in prompts])
        while step < total:
            # Length-bucketed shuffled batches: less padding, still random.
            perm = self.rng.permutation(n)
            chunks = [perm[i:i + self.batch_size * 20] for i in range(0, n, self.batch_size * 20)]
            batches = []
            for ch in chunks:
                ch = ch[np.argsort(lengths[ch])]
                batches += [ch[i:i + self.batch_size] for i in range(0, len(ch), self.batch_size)]
            self.rng.shuffle(batches)
            for idx in batches:
                if step >= total:
                    break
                self.enc.train()
                z = self._encode([prompts[j] for j in idx])
                logits = self.head(z)
                bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y[idx], reduction="none")
                loss = (bce * m[idx]).sum() / m[idx].sum().clamp(min=1.0)
                if self.task_head is not None and tasks is not None:
                    loss = loss + self.task_weight * torch.nn.functional.cross_entropy(
                        self.task_head(z), torch.tensor(tasks[idx]))
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.enc.parameters(), 1.0)
                opt.step()
                sched.step()
                step += 1
                if step % check_every == 0 or step == total:
                    v = validate(self)
                    history.append((step / steps_per_epoch, v))
                    print(f"    epoch {step / steps_per_epoch:.2f}: validation {v:.4f}", flush=True)
                    if v > best[0]:
                        best = (v, copy.deepcopy((self.enc.state_dict(), self.head.state_dict())))
        assert best[1] is not None
        self.enc.load_state_dict(best[1][0])
        self.head.load_state_dict(best[1][1])
        return history


def apgr_of(gain: np.ndarray, m: OutcomeMatrix, rows: np.ndarray) -> float:
    s, w = strong_weak(m)
    frac, pgr = metrics.pgr_curve(gain, m.score[rows, w], m.score[rows, s])
    return metrics.apgr(frac, pgr)


def zscore(v: np.ndarray) -> np.ndarray:
    return (v - v.mean()) / (v.std() + 1e-12)


def run(source: str, seed: int, args: argparse.Namespace) -> dict[str, float | None]:
    set_torch_threads()
    train, test = split(source, seed)
    s, w = strong_weak(train)
    rng = np.random.default_rng(1000 + seed)
    n = len(train.prompts)
    val = np.zeros(n, bool)
    val[rng.choice(n, round(args.val_fraction * n), replace=False)] = True
    fit_rows, val_rows = np.flatnonzero(~val), np.flatnonzero(val)
    task_names = tasks_of(source, seed, train.prompts) if args.task_weight > 0 else None
    task_ids = None
    if task_names is not None:
        vocab = {t: i for i, t in enumerate(sorted(set(task_names)))}
        task_ids = np.array([vocab[t] for t in task_names])
    ft = FineTuner(len(train.models), 0 if task_ids is None else int(task_ids.max()) + 1, args.lr, args.head_lr,
                   args.epochs, args.batch_size, args.max_tokens, args.task_weight, seed)
    val_prompts = [train.prompts[i] for i in val_rows]

    def validate(model: FineTuner) -> float:
        p = model.predict(val_prompts)
        return apgr_of(p[:, s] - p[:, w], train, val_rows)

    t0 = time.time()
    history = ft.fit([train.prompts[i] for i in fit_rows], train.score[fit_rows], train.mask[fit_rows],
                     None if task_ids is None else task_ids[fit_rows], validate)
    fit_s = time.time() - t0
    p_test = ft.predict(test.prompts)
    ft_gain = p_test[:, s] - p_test[:, w]
    ft_apgr, ft_cpt = pgr_point(ft_gain, test)

    # Frozen MiniLM + gain logistic on the same training half (all of it), C by CV.
    emb = SentenceEmbedder()
    x_tr, x_te = emb.transform(train.prompts), emb.transform(test.prompts)
    c = cv_c(x_tr, train)
    frozen_gain = gain_logistic(x_tr, train.score[:, [s, w]], x_te, c)
    fr_apgr, fr_cpt = pgr_point(frozen_gain, test)
    ens_apgr, ens_cpt = pgr_point(zscore(ft_gain) + zscore(frozen_gain), test)
    out = {"seed": seed, "finetuned_apgr": ft_apgr, "finetuned_cpt50": ft_cpt, "frozen_apgr": fr_apgr,
           "frozen_cpt50": fr_cpt, "ensemble_apgr": ens_apgr, "ensemble_cpt50": ens_cpt,
           "best_val_epoch": max(history, key=lambda h: h[1])[0], "fit_seconds": fit_s, "frozen_c": c}
    print(json.dumps(out), flush=True)
    if args.save_scores:
        # Held-out gains, in test-prompt order, for stacking with other routers later without refitting.
        where = default_cache_dir() / "probes" / f"finetune-{source}-seed{seed}.npz"
        where.parent.mkdir(parents=True, exist_ok=True)
        np.savez(where, finetuned=ft_gain, frozen=frozen_gain, prompts=np.array(test.prompts))
        print(f"saved held-out scores to {where}", flush=True)
    return out


def stack(source: str, seed: int) -> dict[str, float | None]:
    """The shipped default router on the same split, alone and z-averaged with the saved fine-tuned gains."""
    from router.api import load_router
    from router.lab.importers import read_prices
    from router.lab.train import TrainConfig, train_router

    saved = np.load(default_cache_dir() / "probes" / f"finetune-{source}-seed{seed}.npz")
    _, test = split(source, seed)
    assert list(saved["prompts"]) == test.prompts, "saved scores are for another split"
    where = ensure_split(source, seed, default_cache_dir() / "bench")
    art = default_cache_dir() / "probes" / f"router-{source}-seed{seed}"
    if not (art / "manifest.json").exists():
        train_router(read_outcomes(where / "train.jsonl"), art, read_prices(where / "prices.json"),
                     TrainConfig(cv_folds=3, seed=seed), exclude_prompts=test.prompts)
    router = load_router(art)
    q = router.predict_features(router.featurizer.transform(test.prompts)).quality
    order = [router.manifest.models.index(m) for m in test.models]
    q = q[:, order]
    s, w = strong_weak(test)
    shipped = q[:, s] - q[:, w]
    a_r, c_r = pgr_point(shipped, test)
    a_ft, c_ft = pgr_point(saved["finetuned"], test)
    a_st, c_st = pgr_point(zscore(shipped) + zscore(saved["finetuned"]), test)
    out = {"seed": seed, "shipped_apgr": a_r, "shipped_cpt50": c_r, "finetuned_apgr": a_ft,
           "finetuned_cpt50": c_ft, "shipped+finetuned_apgr": a_st, "shipped+finetuned_cpt50": c_st}
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default="routellm-mmlu")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--head-lr", type=float, default=1e-3)
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--task-weight", type=float, default=0.3)
    ap.add_argument("--val-fraction", type=float, default=0.15)
    ap.add_argument("--save-scores", action="store_true", help="keep the held-out gains under the router cache")
    ap.add_argument("--out", type=Path, default=None, help="append each seed's JSON line here")
    ap.add_argument("--stack", action="store_true",
                    help="no fine-tuning: stack the saved fine-tuned gains with the shipped default router")
    args = ap.parse_args()
    for seed in args.seeds:
        out = stack(args.source, seed) if args.stack else run(args.source, seed, args)
        if args.out:
            with args.out.open("a") as fh:
                fh.write(json.dumps({"source": args.source, **vars(args), **out}, default=str) + "\n")


if __name__ == "__main__":
    apply_environment_defaults()
    main()
