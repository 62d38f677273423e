"""The stage graph (data → references → SFT → generation → critic → pairs → DPO/HDPO → evaluation) with
caching, manifests and resume."""
