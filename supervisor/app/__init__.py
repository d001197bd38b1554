"""The `actorsup` program: the CLI, the wiring of `actorsup run`, the demo, systemd notify."""
