"""The data layer: records, format adapters, sources, normalization, dedup, splits, buckets, features,
references."""
