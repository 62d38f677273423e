"""`polyalign judge`: a blind LLM judge over served judge models (the rubric of configs/judge/rubric.yaml,
pointwise or pairwise, JSON answers validated with bounded retries, composites with CIs, agreement of judges)."""
