"""Where samples are born: env lanes (one thread per env), the per-env episode loop that streams observations to
rollout workers and finished episodes to the actor, and the rollout-side inference server."""
