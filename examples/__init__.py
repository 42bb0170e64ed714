"""Runnable examples: topologies in YAML and the agents they use."""
