"""A continuous-batching scheduler loop, vLLM-style, driven by the profile's step model.

One asyncio task runs the engine. Each step it:

1. plans: running sequences in decode each take one slot of the token budget
   (`max_num_batched_tokens`, `tokens_per_chunk` tokens each); partially prefilled
   sequences continue their prefill (chunked prefill); then waiting requests are admitted
   FCFS while ``running choices + n <= max_num_seqs`` and the KV budget allows;
2. sleeps until the step's absolute deadline (``start + step_ms``; the next step starts at
   that deadline, not at "now", so the schedule does not drift);
3. emits: every decoding choice gets `tokens_per_chunk` tokens; a request whose prefill
   completed this step gets its first token. Tokens are handed synchronously to the
   request's sink, which writes them to the socket at once and stamps the write.

KV accounting: on admission a request reserves ``prompt + sum(planned output of each
choice)`` tokens (its planned output is known up front: min(max_tokens, natural EOS
length)); this is vLLM's per-token growth without preemption. `kv_cache_usage_perc`
reports what is actually filled (prompt + tokens generated so far) over capacity.

A sequence whose client disconnected is dropped at the next step and frees its slot.
"""

from __future__ import annotations

import asyncio
import collections
import time

from bench.sim.profile import Profile
from bench.sim.sequence import CHOICE_DONE, GONE, Coalescer, Seq

__all__ = ["BACKPRESSURE_BYTES", "LAG_RESET_S", "Engine", "PrefixCache"]

perf_counter = time.perf_counter

# If a stream's unsent bytes exceed this, the client is not reading: skip its decode
# steps until it catches up (bounds memory when the zero-latency profile outruns a client).
BACKPRESSURE_BYTES = 256 * 1024
# Behind schedule by more than this: restart the step clock instead of bursting.
LAG_RESET_S = 0.005


class PrefixCache:
    """LRU set of prompt-prefix block hashes (capacity in blocks)."""

    def __init__(self, capacity_blocks: int) -> None:
        self.capacity = max(1, capacity_blocks)
        self.blocks: collections.OrderedDict[int, None] = collections.OrderedDict()
        self.queries = 0
        self.hits = 0

    def match(self, hashes: tuple[int, ...]) -> int:
        hit = 0
        for h in hashes:
            if h not in self.blocks:
                break
            self.blocks.move_to_end(h)
            hit += 1
        self.queries += len(hashes)
        self.hits += hit
        return hit

    def insert(self, hashes: tuple[int, ...]) -> None:
        for h in hashes:
            self.blocks[h] = None
            self.blocks.move_to_end(h)
        while len(self.blocks) > self.capacity:
            self.blocks.popitem(last=False)


class Engine:
    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.waiting: collections.deque[Seq] = collections.deque()
        self.running: list[Seq] = []
        self.running_choices = 0
        self.kv_reserved = 0
        self.kv_used = 0
        self.prefix_cache = (
            PrefixCache(profile.kv_cache_tokens // profile.prefix_block_tokens)
            if profile.prefix_cache
            else None
        )
        self.coalescer = Coalescer()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Counters for /metrics.
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.steps_total = 0
        self.lag_resets_total = 0
        self.idle_waits_total = 0  # planned steps with nothing to do (stall/backpressure)
        self.finished_total: collections.Counter[str] = collections.Counter()

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sim-engine")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for seq in [*self.waiting, *self.running]:
            if not seq.done.done():
                seq.done.cancel()
        self.waiting.clear()
        self.running.clear()

    def fits(self, prompt_tokens: int, reserve: int, n: int) -> str | None:
        """Why a request can never be scheduled, or None if it can."""
        if n > self.profile.max_num_seqs:
            return f"n={n} exceeds max_num_seqs={self.profile.max_num_seqs}"
        if reserve > self.profile.kv_cache_tokens:
            return (
                f"the request needs {reserve} KV-cache tokens (prompt + n * max_tokens) but "
                f"the cache holds {self.profile.kv_cache_tokens}"
            )
        return None

    def submit(self, seq: Seq) -> None:
        seq.generated = [0] * seq.n
        seq.live = [True] * seq.n
        seq.n_live = seq.n
        seq.reserved = seq.prompt_tokens + sum(seq.targets)
        seq.truth.finish_reasons = [None] * seq.n
        self.waiting.append(seq)
        self._wake.set()

    def cancel(self, seq: Seq) -> None:
        """Client went away: forget the request (its slot is freed at the next step)."""
        if seq.finished:
            return
        seq.truth.cancelled = True
        if not seq.admitted:
            try:
                self.waiting.remove(seq)
            except ValueError:
                pass
            seq.finished = True
        else:
            self._finish(seq)
            self.running = [s for s in self.running if not s.finished]
        if not seq.done.done():
            seq.done.set_result(None)

    # -- metrics -----------------------------------------------------------------------
    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def kv_usage(self) -> float:
        return self.kv_used / self.profile.kv_cache_tokens

    # -- the loop ----------------------------------------------------------------------
    def _finish(self, seq: Seq) -> None:
        seq.finished = True
        if seq.admitted:
            self.running_choices -= seq.n
            self.kv_reserved -= seq.reserved
            self.kv_used -= seq.kv_used
            seq.kv_used = 0

    def _plan(self, now: float) -> tuple[list[Seq], list[tuple[Seq, int]], int, float]:
        p = self.profile
        k = p.tokens_per_chunk
        budget = p.max_num_batched_tokens
        decode: list[Seq] = []
        decode_choices = 0
        partial: list[Seq] = []
        for seq in self.running:
            if seq.prefilled < seq.need:
                partial.append(seq)
            elif seq.paused_until > now or seq.sink.backlog() > BACKPRESSURE_BYTES:
                continue
            else:
                decode.append(seq)
                decode_choices += seq.n_live
        budget -= decode_choices * k
        prefill: list[tuple[Seq, int]] = []
        prefill_tokens = 0
        for seq in partial:
            if budget <= 0:
                break
            chunk = min(seq.need - seq.prefilled, budget)
            prefill.append((seq, chunk))
            prefill_tokens += chunk
            budget -= chunk
        while self.waiting and budget > 0:
            seq = self.waiting[0]
            if not seq.sink.alive():  # gave up while queued: never admit it
                self.cancel(seq)
                continue
            if self.running_choices + seq.n > p.max_num_seqs:
                break
            if self.kv_reserved + seq.reserved > p.kv_cache_tokens:
                break
            self.waiting.popleft()
            self._admit(seq, now)
            chunk = min(seq.need, budget)
            prefill.append((seq, chunk))
            prefill_tokens += chunk
            budget -= chunk
        return decode, prefill, decode_choices, p.step_ms(decode_choices, prefill_tokens)

    def _admit(self, seq: Seq, now: float) -> None:
        seq.admitted = True
        seq.truth.admitted_s = max(now, seq.truth.received_s)  # a step may start just before
        self.running.append(seq)
        self.running_choices += seq.n
        self.kv_reserved += seq.reserved
        cached = 0
        if self.prefix_cache is not None and seq.block_hashes:
            hit = self.prefix_cache.match(seq.block_hashes)
            # vLLM always recomputes at least the last prompt token.
            cached = min(hit * self.profile.prefix_block_tokens, seq.prompt_tokens - 1)
        seq.truth.cached_tokens = cached
        seq.need = max(1, seq.prompt_tokens - cached)
        self.prompt_tokens_total += seq.prompt_tokens
        seq.kv_used = cached
        self.kv_used += cached

    async def _run(self) -> None:
        loop_sleep = asyncio.sleep
        spin_s = self.profile.step_spin_ms / 1000.0
        step_start: float | None = None
        while True:
            if not self.running and not self.waiting:
                self._wake.clear()
                await self._wake.wait()
                step_start = None
            now = perf_counter()
            if step_start is None or now - step_start > LAG_RESET_S:
                if step_start is not None and not self.profile.zero_latency:
                    self.lag_resets_total += 1
                step_start = now
            if self.profile.zero_latency and self.profile.coalesce_steps > 1:
                if self._coalesced_steps():
                    await loop_sleep(0)
                    continue
            decode, prefill, _, step_ms = self._plan(step_start)
            if not decode and not prefill:
                # Everything running is stalled or backpressured: wait a little or for
                # a new arrival, then re-plan.
                self.idle_waits_total += 1
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self._idle_wait(now))
                except TimeoutError:
                    pass
                step_start = None
                continue
            deadline = step_start + step_ms / 1000.0
            # Event-loop timers have millisecond granularity: sleep on a timer until
            # step_spin_ms before the deadline, then yield to the loop (network I/O still
            # runs) until it. The spin is off by default: on a machine where the client
            # shares the cores it costs the client more accuracy than it gains.
            delay = deadline - perf_counter()
            if delay > spin_s:
                await loop_sleep(delay - spin_s)
            await loop_sleep(0)  # let the network in, even at zero latency
            while perf_counter() < deadline:
                await loop_sleep(0)
            self._emit(decode, prefill, perf_counter())
            self.steps_total += 1
            step_start = deadline

    def _coalesced_steps(self) -> bool:
        """Run up to coalesce_steps zero-time steps, then flush; False if none had work."""
        state = self.coalescer
        state.active = True
        worked = False
        try:
            for _ in range(self.profile.coalesce_steps):
                decode, prefill, _, _ = self._plan(perf_counter())
                if not decode and not prefill:
                    break
                worked = True
                self._emit(decode, prefill, perf_counter())
                self.steps_total += 1
        finally:
            state.active = False
            for sink in state.dirty:
                sink.flush()
            state.dirty.clear()
        return worked

    def _idle_wait(self, now: float) -> float:
        paused = [s.paused_until for s in self.running if s.paused_until > now]
        return max(0.0005, min(paused) - now) if paused else 0.001

    def _emit(self, decode: list[Seq], prefill: list[tuple[Seq, int]], t: float) -> None:
        k = self.profile.tokens_per_chunk
        any_done = False
        for seq, chunk in prefill:
            if seq.finished:
                any_done = True
                continue
            seq.prefilled += chunk
            seq.kv_used += chunk
            self.kv_used += chunk
            if seq.prefilled >= seq.need:
                seq.truth.prefill_end_s = t
                if self.prefix_cache is not None and seq.block_hashes:
                    self.prefix_cache.insert(seq.block_hashes)
                self._emit_seq(seq, 1, t)
                any_done = any_done or seq.finished
        for seq in decode:
            if not seq.finished:
                self._emit_seq(seq, k, t)
            any_done = any_done or seq.finished
        if any_done:
            self.running = [s for s in self.running if not s.finished]

    def _emit_seq(self, seq: Seq, k: int, t: float) -> None:
        if not seq.sink.alive():
            self.cancel(seq)
            return
        truth = seq.truth
        seq.steps += 1
        for c in range(seq.n):
            if not seq.live[c]:
                continue
            pos = seq.generated[c]
            target = seq.targets[c]
            count = min(k, target - pos)
            final = pos + count >= target
            code = seq.sink.emit(c, pos, count, seq.reasons[c] if final else None, t)
            if code == GONE:
                self.cancel(seq)
                return
            seq.generated[c] = pos + count
            seq.kv_used += count
            self.kv_used += count
            self.generation_tokens_total += count
            truth.output_tokens += count
            truth.token_times.extend((t,) * count)
            if final or code == CHOICE_DONE:
                seq.live[c] = False
                seq.n_live -= 1
        if seq.stall_after is not None and seq.steps >= seq.stall_after:
            seq.paused_until = t + seq.stall_seconds
            seq.stall_after = None
        if seq.n_live == 0:
            truth.completed_s = perf_counter()
            for reason in truth.finish_reasons:
                self.finished_total[reason or "abort"] += 1
            self._finish(seq)
            if not seq.done.done():
                seq.done.set_result(None)
