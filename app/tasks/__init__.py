"""Tasks: work for field workers at places, with a recorded workflow and proof of visit."""
