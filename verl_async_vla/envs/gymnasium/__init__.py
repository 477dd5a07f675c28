"""Generic adapter: any continuous-action gymnasium env with `render_mode="rgb_array"` becomes an env shard."""
