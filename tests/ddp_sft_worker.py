"""Worker for the distributed contract test: a few Bucket-Aware SFT steps, run by 1 process or by
`accelerate launch --multi_gpu --num_processes 2` with ACCELERATE_USE_CPU=1 (gloo). Rank 0 writes the losses, grad
norms, final DRO weights and final parameters to OUT.

usage: python tests/ddp_sft_worker.py MODEL_DIR OUT_JSON MICRO_BATCH GRAD_ACCUM STEPS [PADDING_FREE (0/1)]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
torch.set_num_threads(1)


def main() -> None:
    model_dir, out, micro, accumulation, steps = sys.argv[1], Path(sys.argv[2]), *map(int, sys.argv[3:6])
    padding_free = len(sys.argv) > 6 and sys.argv[6] == "1"
    from datasets import Dataset
    from records_factory import make_records
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from polyalign.train.bucket_sft_config import BucketSFTConfig
    from polyalign.train.bucket_trainer import BucketSFTTrainer
    from polyalign.train.examples import build_sft_examples, bucket_vocabulary

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    records = make_records(96, seed=5)
    names = bucket_vocabulary(records)
    examples, _ = build_sft_examples(records, tokenizer, {b: i for i, b in enumerate(names)}, max_length=96)
    args = BucketSFTConfig(
        output_dir=str(out.parent / f"work-{out.stem}"), bf16=False, gradient_checkpointing=False,
        save_strategy="no", report_to="none", max_length=96, learning_rate=5e-3, disable_tqdm=True, logging_steps=1,
        seed=0, per_device_train_batch_size=micro, gradient_accumulation_steps=accumulation, max_steps=steps,
        dataloader_pin_memory=False, ddp_find_unused_parameters=False, max_grad_norm=1.0,
        bucket_balance=True, bucket_temperature=2.0, bucket_normalize=True, dro=True, dro_eta=0.5,
        padding_free=padding_free)
    trainer = BucketSFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir), args=args, train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer, bucket_names=names)
    trainer.train()
    if trainer.accelerator.is_main_process:
        logs = [h for h in trainer.state.log_history if "loss" in h]
        params = torch.cat([p.detach().reshape(-1) for p in trainer.accelerator.unwrap_model(trainer.model).parameters()])
        out.write_text(json.dumps({
            "world_size": trainer.accelerator.num_processes, "padding_free": trainer.padding_free,
            "loss": [h["loss"] for h in logs], "grad_norm": [h["grad_norm"] for h in logs],
            "dro_weights": trainer.dro_weights.tolist(), "params": params[:: max(1, params.numel() // 4000)].tolist(),
        }))


if __name__ == "__main__":
    main()
