"""Training: the one loop (:mod:`~fermm.training.loop`, accelerate), the tasks it trains, and the recipes
of each model family (image CNNs, CLIP, text)."""
