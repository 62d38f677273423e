"""Side-by-side samples of a pipeline run: for a few suite prompts (one per context group, the first item of each
group in suite order, so the choice does not look at any output), the human answer and every method's response,
as Markdown.

    python benchmarks/samples_table.py runs/smollm2 --methods base,sft,bucket_sft,dpo,hdpo --n 5 --chars 300
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from polyalign.eval.suite import load_suite  # noqa: E402


def first_item_per_group(items, n: int, key: tuple[str, ...]) -> list:
    """The first suite item of each context group, in suite order, at most `n`."""
    seen, out = set(), []
    for item in items:
        group = tuple(getattr(item, k) for k in key)
        if group not in seen:
            seen.add(group)
            out.append(item)
    return out[:n]


def clip(text: str, chars: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= chars else text[:chars].rstrip() + " …"


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a pipeline work folder (with suite/ and gen_<method>/)")
    parser.add_argument("--methods", default="base,sft,bucket_sft,dpo,hdpo")
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--chars", type=int, default=300)
    args = parser.parse_args()
    suite = load_suite(args.run / "suite")
    items = first_item_per_group(suite.items, args.n, tuple(suite.context_key))
    methods = args.methods.split(",")
    outputs = {}
    for method in methods:
        rows = [json.loads(line) for line in (args.run / f"gen_{method}" / "predictions.jsonl").open()]
        outputs[method] = {(r["id"], r.get("sample", 0)): r for r in rows}
    for item in items:
        prompt = item.prompt if not item.context else f"[passage, {len(item.context)} chars] {item.prompt}"
        turns = f" (turn {len(item.history) // 2 + 1})" if item.history else ""
        print(f"**{item.language} | {item.track} | {item.family}{turns}** — user: {cell(clip(prompt, 200))}\n")
        print("| who | response |\n|---|---|")
        print(f"| human | {cell(clip(item.response, args.chars))} |")
        for method in methods:
            row = outputs[method].get((item.id, 0))
            text = "(no output)" if row is None else clip(row["prediction"], args.chars) + (
                " *(cut at max_new_tokens)*" if row.get("finish") == "length" else "")
            print(f"| {method} | {cell(text)} |")
        print()


if __name__ == "__main__":
    main()
