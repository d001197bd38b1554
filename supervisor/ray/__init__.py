"""``kind = "ray"`` actors: the same Actor class as a Ray actor, under actorsup's supervision."""
