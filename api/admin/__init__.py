"""Bringing a network to life: the consortium admin's first token and the demo consortium."""
