"""Built-in simulated OpenAI-compatible LLM server (the embedded default target).

Use `start_sim()` to run it in a child process on a free loopback port::

    with start_sim("default", seed=1) as sim:
        client = openai.OpenAI(base_url=sim.base_url, api_key="x")

Tokenisation convention (the client's synthetic prompts rely on it): one token = one
whitespace-separated word; for /v1/completions prompt_tokens = words in the prompt, for
chat = words in all message contents + 4 per message. Each generated token is " word".
See `bench.sim.text`.

Ground truth: every completion response (errors too) carries ``x-request-id``;
``GET /sim/requests/{id}`` returns its record, ``GET /sim/requests[?since=S]`` all kept
records, ``--trace FILE`` appends them as JSONL. Times are ``time.perf_counter()`` in the
server (CLOCK_MONOTONIC, comparable with the client's perf_counter on the same host):

- ``received_s``: the request's first bytes reached the server process; ``received_end_s``:
  its last bytes (completions, chat and responses);
- ``response_start_s``: response headers written (streams) / response built (unary);
- ``admitted_s``: entered the running batch; ``prefill_end_s``: end of the step that
  finished its prefill (its first token comes out of that step);
- ``token_times_s``: one per token, the end of the step that produced it;
- ``chunk_write_times_s``: one per content chunk written, stamped right after the
  socket write (``chunk_choice_index`` says which choice; ``coalesced`` is true when a
  zero-latency profile wrote several chunks at once, all stamped with that write);
- ``prompt_tokens``, ``cached_tokens``, ``output_tokens``, ``finish_reason(s)``, ``n``,
  ``status``, ``fault`` (the applied fault spec, e.g. ``"drop:every=5"``), ``cancelled``.
"""

from bench.sim.process import SimHandle, SimStartError, start_sim
from bench.sim.profile import Profile, ProfileError, load_profile, max_request_rate, predict

__all__ = ["Profile", "ProfileError", "SimHandle", "SimStartError", "load_profile",
           "max_request_rate", "predict", "start_sim"]
