"""Command actors: any program as a supervised component (argv, sd_notify, probes, capture)."""
