"""Pieces every training stage shares: atomic resumable checkpoints, a time budget, EMA, image metrics, logs."""
