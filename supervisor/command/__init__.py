"""Command actors (``kind = "command"``): any program as a supervised component.

The blocks, one job each: ``_argv`` (command -> argv, program resolution),
``_spec`` (the command keys validated), ``_privileges`` (user/group),
``_launch`` (spawn the program), ``_notify`` (its sd_notify socket),
``_probe`` (liveness probes), ``_capture`` (JSON output lines as fields),
``_errors`` (their errors).
"""
