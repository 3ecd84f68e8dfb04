"""What to send and when: request bodies from prompts, the arrival schedule and the run plan."""
