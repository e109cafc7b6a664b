"""Time one GRPO step for ReLSum, split into generation, reward and backward.

The step is the one trl's GRPOTrainer takes (sample `num_generations` completions per prompt,
score them, group-normalised advantages, policy-gradient loss on the LoRA policy), written out
so each phase can be timed. The reward is the frozen ONNX ranker, called once for all
completions of the step; the alternative a user would write (one call per completion) is timed
in the same run. Target: the reward at most 10% of the step.

    .venv/bin/python benchmarks/train_step.py --lake lake [--prompts 2 --generations 4 --tokens 24 --repeats 3]
                                              [--precision fp32|bf16|both]

With `both` (the default, where the CPU has bf16 instructions) the same steps are timed in fp32 and
under bf16 autocast, which is what training.train.bf16 picks by default on such a CPU.

Needs a lake with judged pairs and a trained ranker (`make demo` makes one).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

# run as a script, benchmarks/ is sys.path[0] and its ranker.py would shadow the ranker package
sys.path[0] = str(Path(__file__).resolve().parents[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", default="lake")
    ap.add_argument("--prompts", type=int, default=2, help="prompts per step")
    ap.add_argument("--generations", type=int, default=4, help="completions per prompt (GRPO group size)")
    ap.add_argument("--tokens", type=int, default=24, help="max new tokens per completion")
    ap.add_argument("--repeats", type=int, default=3, help="steps timed (after one warm-up step)")
    ap.add_argument("--precision", choices=["fp32", "bf16", "both"], default="both",
                    help="fp32, bf16 autocast, or both in this run (both: only where the CPU has bf16 instructions)")
    a = ap.parse_args()

    import torch
    from peft import get_peft_model

    from jobs.config import load_config
    from jobs.lake import Lake
    from jobs.train.datasets import base_model as _base_model, load_tokenizer as _tokenizer, relsum_rows
    from jobs.train.rewards import relsum_reward
    from training.common import load_policy, use_bf16
    from training.config import TrainingConfig

    lake = Lake(load_config(None, lake=a.lake))
    cfg = lake.cfg.training
    tokenizer = _tokenizer(lake)
    rows = relsum_rows(lake, tokenizer, a.prompts * (a.repeats + 1))
    cpu_bf16 = use_bf16(TrainingConfig(train={"use_cpu": True}))  # what training picks on this CPU by default
    precisions = {"fp32": ["fp32"], "bf16": ["bf16"], "both": ["fp32", "bf16"] if cpu_bf16 else ["fp32"]}[a.precision]
    reward = relsum_reward(lake)
    model, tokenizer, peft_config = load_policy(_base_model(lake), None, cfg)
    model = get_peft_model(model, peft_config)
    tokenizer.padding_side = "left"
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.train.learning_rate)
    print(f"torch threads {torch.get_num_threads()}, {a.prompts} prompts x {a.generations} completions x {a.tokens} tokens")

    def step_timings(bf16: bool) -> tuple[float, float, float, float]:
        """Mean (generation, reward, backward, reward one call per completion) seconds of a step."""
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
        timings = []
        for step in range(a.repeats + 1):
            batch = rows[step * a.prompts:(step + 1) * a.prompts]
            prompts = [r["prompt"] for r in batch for _ in range(a.generations)]
            enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            t0 = time.perf_counter()
            model.eval()
            with torch.no_grad(), autocast:
                out = model.generate(**enc, do_sample=True, temperature=1.0, max_new_tokens=a.tokens, pad_token_id=tokenizer.pad_token_id)
            completions = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            t1 = time.perf_counter()
            cols = {k: [r[k] for r in batch for _ in range(a.generations)] for k in ("query", "title", "gain", "max_words")}
            rewards = np.asarray(reward(prompts, completions, **cols))
            t2 = time.perf_counter()
            # the alternative: one scorer call per completion
            for i in range(len(completions)):
                reward(prompts[i:i + 1], completions[i:i + 1], **{k: v[i:i + 1] for k, v in cols.items()})
            t3 = time.perf_counter()
            groups = rewards.reshape(a.prompts, a.generations)
            adv = torch.tensor(((groups - groups.mean(1, keepdims=True)) / (groups.std(1, keepdims=True) + 1e-4)).reshape(-1),
                               dtype=torch.float32)
            model.train()
            mask = (out != tokenizer.pad_token_id).long()
            with autocast:
                logits = model(input_ids=out, attention_mask=mask).logits[:, enc["input_ids"].shape[1] - 1:-1]
            gen = out[:, enc["input_ids"].shape[1]:]
            logp = torch.log_softmax(logits.float(), -1).gather(-1, gen.unsqueeze(-1)).squeeze(-1)
            keep = (gen != tokenizer.pad_token_id).float()
            loss = -((logp * keep).sum(1) / keep.sum(1).clamp(min=1) * adv).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            t4 = time.perf_counter()
            if step:  # the first step warms up
                timings.append((t1 - t0, t2 - t1, t4 - t3, t3 - t2))
        return tuple(np.mean(timings, axis=0))

    totals = {}
    for precision in precisions:
        g, r, b, r1 = step_timings(precision == "bf16")
        total = totals[precision] = g + r + b
        print(f"GRPO step, {precision} (mean of {a.repeats}): {total:.2f} s")
        print(f"  generation {g:6.2f} s  {100 * g / total:5.1f}%")
        print(f"  reward     {r:6.3f} s  {100 * r / total:5.1f}%   (one batched ONNX call for {a.prompts * a.generations} completions)")
        print(f"  backward   {b:6.2f} s  {100 * b / total:5.1f}%   (forward with grad + backward + AdamW step)")
        print(f"  reward, one call per completion instead: {r1:.3f} s ({r1 / r:.2f}x the batched call; "
              f"{100 * r1 / (g + r1 + b):.1f}% of such a step)")
    if len(totals) == 2:
        print(f"bf16 autocast step: {totals['bf16']:.2f} s vs fp32 {totals['fp32']:.2f} s "
              f"({totals['fp32'] / totals['bf16']:.2f}x faster; training.train.bf16 picks it by default on this CPU)")

if __name__ == "__main__":
    main()
