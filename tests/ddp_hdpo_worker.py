"""Worker for the distributed HDPO contract test: `run_hdpo` for a few steps (weights, regularizer and anchor on),
run by 1 process or by `accelerate launch --multi_gpu --num_processes 2` with ACCELERATE_USE_CPU=1 (gloo). Rank 0
writes the logged losses, grad norms, reward margins and the final parameters to OUT.

usage: python tests/ddp_hdpo_worker.py MODEL_DIR PAIRS OUT_JSON MICRO_BATCH GRAD_ACCUM STEPS
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
torch.set_num_threads(1)


def main() -> None:
    model_dir, pairs, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    micro, accumulation, steps = map(int, sys.argv[4:7])
    from accelerate import PartialState
    from transformers import AutoModelForCausalLM, TrainerCallback

    from polyalign.train.hdpo import HDPORunConfig, run_hdpo

    class Record(TrainerCallback):
        def __init__(self) -> None:
            self.logs: list[dict] = []

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if logs and "loss" in logs:
                self.logs.append(dict(logs))

    recorder = Record()
    config = HDPORunConfig(
        model=model_dir, pairs=pairs, output_dir=str(out.parent / f"model-{out.stem}"), seed=0, max_length=96,
        min_prompt_tokens=16, loss={"beta": 0.1, "reg_lambda": 0.5, "reg_form": "expected", "anchor_gamma": 0.2,
                                    "use_weights": True},
        training={"per_device_train_batch_size": micro, "gradient_accumulation_steps": accumulation,
                  "max_steps": steps, "learning_rate": 5e-3, "logging_steps": 1, "dataloader_pin_memory": False,
                  "max_grad_norm": 1.0})
    output = run_hdpo(config, callbacks=[recorder])
    state = PartialState()
    if state.is_main_process:
        model = AutoModelForCausalLM.from_pretrained(output)
        params = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        logs = recorder.logs
        out.write_text(json.dumps({
            "world_size": state.num_processes, "loss": [h["loss"] for h in logs],
            "grad_norm": [h["grad_norm"] for h in logs], "margins": [h["rewards/margins"] for h in logs],
            "bucket_accuracy_macro": [h.get("bucket_reward_accuracy_macro") for h in logs],
            "params": params[:: max(1, params.numel() // 4000)].tolist()}))


if __name__ == "__main__":
    main()
