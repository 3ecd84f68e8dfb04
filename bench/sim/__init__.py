"""Built-in simulated OpenAI-compatible LLM server (the embedded default target).

Use `start_sim()` to run it in a child process on a free loopback port::

    with start_sim("default", seed=1) as sim:
        client = openai.OpenAI(base_url=sim.base_url, api_key="x")

Tokenisation convention (the client's synthetic prompts rely on it): one token = one
whitespace-separated word; for /v1/completions prompt_tokens = words in the prompt, for
chat = words in all message contents + 4 per message. Each generated token is " word".
See `bench.sim.text`. Ground truth per request: GET /sim/requests/{x-request-id}.
"""

from bench.sim.process import SimHandle, SimStartError, start_sim
from bench.sim.profile import Profile, ProfileError, load_profile, max_request_rate, predict

__all__ = ["Profile", "ProfileError", "SimHandle", "SimStartError", "load_profile",
           "max_request_rate", "predict", "start_sim"]
