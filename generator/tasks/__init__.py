"""One module per seed task: prompts, parsing and validation. See `base.Task`."""
