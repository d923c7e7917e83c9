"""``rtseg bench``: latency and throughput in three tiers (model only, model + transfers, end to end on a video)
beside a naive PyTorch baseline, with the machine and versions stamped on every result."""
