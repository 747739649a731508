"""Training on Colossal-AI's Booster: config, plugins, optimiser and schedule, loop, checkpoints, metrics."""
