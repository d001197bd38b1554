"""Child processes: spawning (cold and warm), identity by (pid, create_time), group signals and
the stop escalation, psutil sampling and resource limits."""
