"""One actor's life on the supervisor side: its states, the restart policy, heartbeat
deadlines, health tracking, and the handle that carries the decisions out."""
