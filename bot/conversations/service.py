"""The conversation service: records turns, then answers each conversation's turns in order."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from bot.conversations.arrivals import Arrivals
from bot.conversations.backend import (
    AnswerRequest,
    AwaitingDecision,
    Backend,
    BackendEvent,
    BackendState,
    Checkpoint,
    ConversationRef,
    InputNotice,
    Progress,
    StateChanged,
    ToolActivity,
    Usage,
)
from bot.conversations.files import refusal
from bot.conversations.inputs import InputStage, OutputStage, PreparedInput
from bot.conversations.observe import AnswerObserver, NoObserver, watch_answer
from bot.conversations.ports import Platform, PlatformReply, ReplyStream
from bot.conversations.profiles import Profile
from bot.conversations.recovery import GAVE_UP, RememberedReply, earlier_reply_ts
from bot.conversations.tools import ToolContext, ToolRegistry
from bot.conversations.turn import (
    HistoryMessage,
    ReplyCompleted,
    ReplyFailed,
    ReplyStopped,
    ReplyWithdrawn,
    Surface,
    Turn,
)
from bot.errors import (
    AnswerWithheld,
    APIError,
    APIStatusError,
    BotError,
    DeliveryError,
    InsufficientQuotaError,
    PlatformUnavailable,
    ProfileNotFound,
    StoreError,
)
from bot.logs import bind_api_ids
from bot.store.models import Conversation, TurnRecord, TurnStatus
from bot.store.repositories import HEARTBEAT_SECONDS, HEARTBEAT_STALE_SECONDS, ArrivingTurn, Store

log = logging.getLogger(__name__)

NOTHING_TO_ANSWER = "Hi! What can I help you with? Write your question after the mention."
# A worker stops this long before its lease could pass to another replica (the heartbeat, or the lease
# itself, unconfirmed for too long): two beats' worth, so that it stops before anyone else starts.
LEASE_SAFETY_SECONDS = 2 * HEARTBEAT_SECONDS


class StopOutcome(str, enum.Enum):
    """What a request to stop an answer did."""

    STOPPING = "stopping"  # the answer in progress stops now (here, or on the replica answering it)
    NOTHING_RUNNING = "nothing_running"  # no answer is in progress in that conversation
    NOT_ALLOWED = "not_allowed"  # only the people asking, and admins, may stop an answer


class _AnswerEnd(enum.Enum):
    """How a backend's events ended other than by an event."""

    EXHAUSTED = "exhausted"  # the backend had nothing more
    STOPPED = "stopped"  # someone stopped the answer


@dataclass(frozen=True)
class _BatchEnd:
    """How a batch's answer ended: recorded with the release of the conversation's lease, in one write."""

    status: TurnStatus
    error: str | None
    reply_ts: str | None
    tokens: tuple[int, int] | None  # prompt and completion tokens, when the backend reported them


class StopSignal:
    """Someone asked to stop one answer. A wait for the backend's next event is cut at once; work on an event
    already read (a store write, a Slack call) is finished first, and the answer stops before the next read.

    The cut expires the read's timeout scope, which costs nothing per event, where a task racing each read
    against the stop would cost a task and a wait per token.
    """

    def __init__(self) -> None:
        self._set = False
        self._reading: asyncio.Timeout | None = None

    def set(self) -> None:
        self._set = True
        if self._reading is not None:
            self._reading.reschedule(asyncio.get_running_loop().time())

    def is_set(self) -> bool:
        return self._set

    async def next_event(self, events: AsyncIterator[BackendEvent]) -> BackendEvent | _AnswerEnd:
        """The backend's next event, or STOPPED once stopped (the wait for it is cancelled, which ends the
        backend's HTTP read)."""
        if self._set:
            return _AnswerEnd.STOPPED
        try:
            async with asyncio.timeout(None) as reading:
                self._reading = reading
                return await anext(events, _AnswerEnd.EXHAUSTED)
        except TimeoutError:
            if reading.expired() and self._set:
                return _AnswerEnd.STOPPED
            raise
        finally:
            self._reading = None


def batch_progress(records: Sequence[TurnRecord]) -> Progress | None:
    """What the backend checkpointed for a batch (every turn of it carries the same progress)."""
    return next((record.backend_progress for record in reversed(records) if record.backend_progress), None)


def api_failure_reason(error: APIError) -> str:
    """Plain words for an API failure; the operator's log has the details."""
    if isinstance(error, InsufficientQuotaError):
        return "The assistant's API account is out of quota. Please tell whoever runs this bot."
    if isinstance(error, APIStatusError) and error.status_code in (401, 403):
        return "The bot's API credentials were refused. Please tell whoever runs this bot."
    if isinstance(error, APIStatusError) and error.status_code == 404:
        return "The assistant or conversation could not be found on the API. Try starting a new thread."
    if isinstance(error, APIStatusError) and error.status_code == 429:
        return "The assistant is busy right now. Please try again in a minute."
    return "I couldn't reach the assistant just now. Please try again in a moment."


class ChannelProfiles:
    """Which profile a channel talks to: its own choice, or the backend's default."""

    def __init__(self, *, store: Store, backend: Backend) -> None:
        self._store = store
        self._backend = backend

    async def chosen_id(self, *, team_id: str, channel_id: str) -> str | None:
        return await self._store.channel_profile(team_id=team_id, channel_id=channel_id)

    async def for_channel(self, *, team_id: str, channel_id: str) -> tuple[Profile, bool]:
        """The channel's profile, and whether it is the default (no choice, or a choice that is gone)."""
        chosen = await self.chosen_id(team_id=team_id, channel_id=channel_id)
        if chosen is not None:
            try:
                return await self._backend.profiles.get(chosen), False
            except ProfileNotFound:
                log.warning(
                    "channel %s/%s uses profile %s, which the %s backend does not have; using the default",
                    team_id,
                    channel_id,
                    chosen,
                    self._backend.name,
                )
        return await self._backend.profiles.default(), True


class ConversationService:
    """Turns in, answers out: one worker per conversation at a time, across processes (leases)."""

    def __init__(
        self,
        *,
        store: Store,
        backend: Backend,
        platform: Platform,
        profiles: ChannelProfiles,
        tools: ToolRegistry,
        input_stages: Sequence[InputStage] = (),
        output_stages: Sequence[OutputStage] = (),
        lease_seconds: float = 60.0,
        sweep_seconds: float = 15.0,
        max_attempts: int = 3,
        max_concurrent_answers: int = 100,
        leases_shared: bool = True,
        clock: Callable[[], float] = time.monotonic,
        observer: AnswerObserver | None = None,
    ) -> None:
        self._store = store
        self._backend = backend
        self._platform = platform
        self._profiles = profiles
        self._tools = tools
        self._input_stages = list(input_stages)
        self._output_stages = list(output_stages)
        self._lease_seconds = lease_seconds
        self._sweep_seconds = sweep_seconds
        self._max_attempts = max_attempts
        self.owner = f"worker-{uuid.uuid4().hex[:12]}"
        self._clock = clock
        self._observer = observer or NoObserver()
        self._workers: dict[int, asyncio.Task[None]] = {}
        # A burst larger than this waits its turn, unclaimed (so any replica may take it), rather than have every
        # answer share the CPU and the database at once and each be slow; the answers' own waits are on the model.
        self._answer_slots = asyncio.Semaphore(max_concurrent_answers)
        # The leases held here: when each was last confirmed (this process's clock), and its worker. The
        # heartbeat renews them all in one statement; one guard stops the workers whose lease could pass on.
        self._leases: dict[int, tuple[float, asyncio.Task[None]]] = {}
        self._lease_guard: asyncio.Task[None] | None = None
        # Whether a lease that lapses could go to another process. Where none can (a database only this process
        # uses), a worker whose heartbeat or lease went unconfirmed for a while (the database busy) answers on:
        # stopping would protect nothing, and would only have the answer taken up again.
        self._leases_shared = leases_shared
        # A worker stops this long before its lease could pass on; a short lease (tests use one) in proportion.
        self._lease_margin = min(LEASE_SAFETY_SECONDS, lease_seconds / 3)
        # Leases are renewed three times within the time they are trusted, so that a renewal delayed or failed
        # (a busy database, a slow beat) never stops an answer on its own.
        self._renew_seconds = (lease_seconds - self._lease_margin) / 3
        self._leases_renewed_at = clock()
        self._more_work: set[int] = set()
        # The platform's stream of each answer being written, so that a worker losing its lease can abandon it.
        self._streams: dict[int, PlatformReply] = {}
        # Set when someone stops the answer of a conversation answered here (directly, or through the database
        # from another replica).
        self._stops: dict[int, StopSignal] = {}
        self._stop_watch: asyncio.Task[None] | None = None
        # Set at shutdown: the stop watcher ends between two looks, never in the middle of a query.
        self._closing = asyncio.Event()
        # The heartbeat's loop (perhaps another thread's) and the event that ends it, there.
        self._heartbeat_ending: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._heartbeat_ended = False
        # When the newest confirmed heartbeat was sent (this process's clock): the process's leases are
        # alive for others until HEARTBEAT_STALE_SECONDS after it.
        self._beat_confirmed_at = clock()
        self._accepting = True
        self._arrivals = Arrivals(store, schedule=self.schedule)
        self._loop = asyncio.get_running_loop()  # the workers' loop, which the heartbeat reports to

    # Intake --------------------------------------------------------------------------------

    async def accept(self, turn: Turn) -> bool:
        """Record the turn durably (with the others arriving at once), then schedule it; False for a
        redelivered event."""
        if not self._accepting:
            raise BotError("shutting down; not taking new work")
        recorded = await self._arrivals.record(
            ArrivingTurn(
                team_id=turn.team_id,
                channel_id=turn.channel_id,
                thread_key=turn.thread_key,
                surface=turn.surface.value,
                event_id=turn.event_id,
                user_id=turn.user_id,
                message_ts=turn.message_ts,
                payload=turn.to_payload(),
            )
        )
        if not recorded:
            log.info("event %s was already recorded; not answering it twice", turn.event_id)
        return recorded

    async def find_conversation(self, *, team_id: str, channel_id: str, thread_key: str) -> Conversation | None:
        return await self._store.find_conversation(team_id=team_id, channel_id=channel_id, thread_key=thread_key)

    async def stop(
        self, *, team_id: str, channel_id: str, thread_key: str, user_id: str, is_admin: Callable[[], Awaitable[bool]]
    ) -> StopOutcome:
        """Stop the answer in progress in a conversation: at once when it is answered here, otherwise through the
        database (the replica answering it looks every few seconds). The people who asked, and admins, may."""
        conversation = await self._store.find_conversation(
            team_id=team_id, channel_id=channel_id, thread_key=thread_key
        )
        if conversation is None:
            return StopOutcome.NOTHING_RUNNING
        askers = {
            record.user_id
            for record in await self._store.open_turns(conversation.id)
            if record.status == TurnStatus.RUNNING.value
        }
        if not askers:
            return StopOutcome.NOTHING_RUNNING
        if user_id not in askers and not await is_admin():
            log.info("user %s may not stop the answer in conversation %s", user_id, conversation.id)
            return StopOutcome.NOT_ALLOWED
        log.info("conversation %s: %s asked to stop the answer", conversation.id, user_id)
        here = self._stops.get(conversation.id)
        if here is not None:
            here.set()
            return StopOutcome.STOPPING
        stopping = await self._store.request_stop(conversation.id)
        return StopOutcome.STOPPING if stopping else StopOutcome.NOTHING_RUNNING

    async def remember_viewing(
        self, *, team_id: str, channel_id: str, thread_key: str, surface: Surface, viewing: dict[str, str] | None
    ) -> None:
        """Note what the person has in view beside the conversation (the platform's description), which the
        platform gives the assistant with their next message."""
        conversation = await self._store.get_or_create_conversation(
            team_id=team_id, channel_id=channel_id, thread_key=thread_key, surface=surface.value
        )
        await self._store.set_viewing_context(conversation.id, viewing)

    async def open_conversation(self, *, team_id: str, channel_id: str, thread_key: str, surface: Surface) -> None:
        """Remember a conversation before its first message (Slack's assistant pane opens threads)."""
        await self._store.get_or_create_conversation(
            team_id=team_id, channel_id=channel_id, thread_key=thread_key, surface=surface.value
        )

    # Scheduling ----------------------------------------------------------------------------

    def schedule(self, conversation_id: int) -> None:
        if self._working(conversation_id):
            self._more_work.add(conversation_id)
            return
        task = asyncio.create_task(self._work(conversation_id), name=f"conversation-{conversation_id}")
        self._workers[conversation_id] = task
        task.add_done_callback(lambda done: self._forget_worker(conversation_id, done))

    def _forget_worker(self, conversation_id: int, task: asyncio.Task[None]) -> None:
        if self._workers.get(conversation_id) is task:
            del self._workers[conversation_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("worker for conversation %s crashed", conversation_id, exc_info=task.exception())

    async def recover(self) -> int:
        """Schedule every conversation with unfinished turns whose lease is free; returns how many."""
        found = await self._store.conversations_needing_work(owner=self.owner)
        # Our own leases are among them (a release that failed leaves one behind), but a conversation whose
        # worker is still at work here needs no second pass.
        idle = [conversation_id for conversation_id in found if not self._working(conversation_id)]
        for conversation_id in idle:
            self.schedule(conversation_id)
        return len(idle)

    def _working(self, conversation_id: int) -> bool:
        worker = self._workers.get(conversation_id)
        return worker is not None and not worker.done()

    async def sweep_forever(self) -> None:
        """Pick up work whose owner died (stale heartbeat, expired lease) or that no event announced."""
        while True:
            await asyncio.sleep(self._sweep_seconds)
            try:
                await self.recover()
            except Exception:  # a sweep that dies leaves every orphaned turn unanswered for good
                log.exception("recovery sweep failed; trying again later")

    async def heartbeat_forever(self, store: Store) -> None:
        """Keep this process's heartbeat fresh, so that its leases hold; a dead process's go free in seconds.
        The leases held here are renewed with it, all in one statement, three times within their trusted time.

        It runs on a loop of its own (another thread's, with ``store`` connected there), so that answers
        keeping this loop busy never delay a beat: a busy process is alive, and its leases must hold. What a
        beat learns reaches the workers through their own loop. It ends at `end_heartbeat`, between two beats:
        cancelled in the middle of one, its connection's return to the pool would be cut off too."""
        workers_loop = self._loop
        ending = asyncio.Event()
        self._heartbeat_ending = (asyncio.get_running_loop(), ending)
        while not (ending.is_set() or self._heartbeat_ended):
            sent_at = self._clock()
            # Renewed at this beat when the next would come too late.
            due = sent_at - self._leases_renewed_at + HEARTBEAT_SECONDS > self._renew_seconds
            renewing = tuple(self._leases) if due else ()
            try:
                # Bounded, so that a database that hangs (not refuses) counts as a failed beat and is retried.
                async with asyncio.timeout(HEARTBEAT_STALE_SECONDS):
                    held = await store.beat(renewing=renewing, owner=self.owner, lease_seconds=self._lease_seconds)
            except Exception:  # workers see the heartbeat unconfirmed and stop before their leases pass on
                log.warning("could not stamp the heartbeat", exc_info=True)
            else:
                self._beat_confirmed_at = sent_at
                if renewing:
                    self._leases_renewed_at = sent_at
                    workers_loop.call_soon_threadsafe(self._renewed, renewing, held, sent_at)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ending.wait(), timeout=HEARTBEAT_SECONDS)

    def _renewed(self, renewing: Sequence[int], held: set[int], at: float) -> None:
        for conversation_id in renewing:
            lease = self._leases.get(conversation_id)
            if lease is None:
                continue  # released meanwhile
            if conversation_id in held:
                self._leases[conversation_id] = (max(lease[0], at), lease[1])
                continue
            # Our lease ran out (a stalled process or database) and a live worker now answers these turns.
            log.error(
                "conversation %s: lease lost to another worker; stopping so nothing is answered twice", conversation_id
            )
            self._stop_worker(conversation_id, lease[1])

    def end_heartbeat(self) -> None:
        self._heartbeat_ended = True  # a heartbeat not yet started never starts
        if self._heartbeat_ending is not None:
            loop, ending = self._heartbeat_ending
            loop.call_soon_threadsafe(ending.set)

    async def shutdown(self, grace_seconds: float) -> None:
        """Stop taking work, give in-flight turns the grace period, and leave the rest for recovery."""
        self._accepting = False
        workers = [task for task in self._workers.values() if not task.done()]
        if not workers:
            await self._end_stop_watch()
            return
        done, pending = await asyncio.wait(workers, timeout=grace_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if pending:
            log.warning("%d conversations still running at shutdown; they resume on the next start", len(pending))
        await self._end_stop_watch()

    async def _end_stop_watch(self) -> None:
        """No answer is left to stop: the watcher ends at once, or after the query it is in the middle of."""
        self._closing.set()
        if self._stop_watch is not None:
            await asyncio.gather(self._stop_watch, return_exceptions=True)

    async def idle(self) -> None:
        """Wait until no worker is running (for tests and orderly shutdown)."""
        while any(not task.done() for task in self._workers.values()):
            await asyncio.gather(*self._workers.values(), return_exceptions=True)

    # Work ----------------------------------------------------------------------------------

    async def _work(self, conversation_id: int) -> None:
        """Answer the conversation's open turns, batch after batch, while holding its lease.

        The lease (a conditional UPDATE of the conversation row, renewed while working) rather than
        `FOR UPDATE SKIP LOCKED` or an advisory lock: those last only as long as one transaction or
        connection, while an answer takes minutes and must survive a dropped connection; a lease is
        a durable claim that simply expires when its replica dies, and works on SQLite as well.
        """
        async with self._answer_slots:
            if self._accepting:
                await self._work_while_held(conversation_id)

    async def _work_while_held(self, conversation_id: int) -> None:
        while True:
            self._more_work.discard(conversation_id)
            claimed_at = self._clock()
            work = await self._store.claim_work(conversation_id, owner=self.owner, lease_seconds=self._lease_seconds)
            if work is None:
                return  # another worker holds it; it will see our turn, or the sweep will
            conversation, records = work
            self._beat_confirmed_at = max(self._beat_confirmed_at, claimed_at)  # the claim stamps the heartbeat
            worker = asyncio.current_task()
            assert worker is not None  # _work always runs as a task of its own (see schedule)
            self._leases[conversation_id] = (claimed_at, worker)
            self._guard_leases()
            # Set once the batch's end has released the lease in the same transaction.
            more_waiting: bool | None = None
            try:
                exhausted = [record for record in records if record.attempts >= self._max_attempts]
                if exhausted:
                    await self._give_up(conversation_id, exhausted)
                    records = [record for record in records if record.attempts < self._max_attempts]
                sent = [record for record in records if record.backend_progress is not None]
                if sent:
                    # What a dead worker already sent to the backend is finished first, as the batch it was;
                    # turns that came after get an answer of their own.
                    records = sent
                if records:
                    end = await self._answer(conversation, records)
                    more_waiting = await self._store.finish_batch(
                        conversation_id,
                        owner=self.owner,
                        turn_ids=[record.id for record in records],
                        status=end.status.value,
                        error=end.error,
                        reply_ts=end.reply_ts,
                        tokens=end.tokens,
                    )
            except PlatformUnavailable as exc:
                # The chat platform failed for now, past its client's retries: the turns stay open (their attempt
                # counted) for the sweep, which tries them again in seconds; at once would meet the same limit.
                log.warning(
                    "conversation %s: the chat platform failed for now; the sweep tries again: %s", conversation_id, exc
                )
                return
            finally:
                # Whatever ended it, the lease is released.
                self._leases.pop(conversation_id, None)
                self._stops.pop(conversation_id, None)
                if more_waiting is None:
                    try:
                        await self._store.release_conversation(conversation_id, owner=self.owner)
                    except StoreError as exc:
                        # Still ours then: the sweep counts our own leases, and schedules this conversation again.
                        log.warning("conversation %s: could not release the lease: %s", conversation_id, exc)
            if not self._accepting:
                return  # shutting down: what arrived meanwhile is left, lease released, for recovery
            # Another replica that recorded a turn while we held the lease gave up its claim: the batch's end
            # saw it, and it is answered now rather than at the next sweep. One recorded here meanwhile is in
            # _more_work (read after the end's check, with no wait between the read and returning).
            if more_waiting is not None:
                if more_waiting or conversation_id in self._more_work:
                    continue
                return
            if conversation_id in self._more_work:
                continue
            # _more_work is read after the check: a turn scheduled while the check was in flight (its
            # commit too late for the check to see) is noted there, and would otherwise have no worker.
            if not await self._store.open_turns(conversation_id) and conversation_id not in self._more_work:
                return

    def _guard_leases(self) -> None:
        if not self._leases_shared:
            return
        if self._lease_guard is None or self._lease_guard.done():
            self._lease_guard = asyncio.create_task(self._stop_workers_before_leases_pass(), name="lease-guard")

    async def _stop_workers_before_leases_pass(self) -> None:
        """Stop each worker whose lease could pass to another replica: once the heartbeat or its lease has gone
        unconfirmed (the database unreachable) so long that another might take the conversation over, the worker
        stops just before. Apart from the heartbeat, so that a beat that hangs never delays the stop. It ends
        when no lease is held here."""
        # A short lease (tests use one) is checked in proportion to its length.
        check_seconds = min(HEARTBEAT_SECONDS, self._lease_seconds / 3)
        while self._leases:
            await asyncio.sleep(check_seconds)
            now = self._clock()
            beat_safe = now - self._beat_confirmed_at < HEARTBEAT_STALE_SECONDS - LEASE_SAFETY_SECONDS
            for conversation_id, (confirmed_at, worker) in list(self._leases.items()):
                if beat_safe and now - confirmed_at < self._lease_seconds - self._lease_margin:
                    continue
                log.error(
                    "conversation %s: the lease could not be confirmed; stopping before another worker takes it",
                    conversation_id,
                )
                self._stop_worker(conversation_id, worker)

    def _watch_stops(self) -> None:
        if self._stop_watch is None or self._stop_watch.done():
            self._stop_watch = asyncio.create_task(self._watch_for_stop_requests(), name="stop-requests")

    async def _watch_for_stop_requests(self) -> None:
        """A stop asked of another replica reaches the one answering through the database: one query for all
        the answers in progress here, as often as leases are checked, apart from the renewers (so that a slow
        database never delays their stopping in time). It ends when no answer is in progress."""
        check_seconds = min(HEARTBEAT_SECONDS, self._lease_seconds / 3)
        while self._stops:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=check_seconds)
            if self._closing.is_set():
                return
            answering = [conversation_id for conversation_id, stop in self._stops.items() if not stop.is_set()]
            if not answering:
                continue
            try:
                async with asyncio.timeout(HEARTBEAT_STALE_SECONDS):
                    requested = await self._store.stops_requested(answering)
            except Exception:  # the watcher must live on; the next look may succeed
                log.warning("could not look for stop requests", exc_info=True)
                continue
            for conversation_id in requested:
                stop = self._stops.get(conversation_id)
                if stop is not None:
                    log.info("conversation %s: stop requested through another replica", conversation_id)
                    stop.set()

    def _stop_worker(self, conversation_id: int, worker: asyncio.Task[None]) -> None:
        """The answer is another worker's now: its lease is no longer kept, its stream writes nothing more, then
        the worker is cancelled."""
        self._leases.pop(conversation_id, None)
        stream = self._streams.get(conversation_id)
        if stream is not None:
            stream.abandon()
        worker.cancel()

    async def _answer(self, conversation: Conversation, records: Sequence[TurnRecord]) -> _BatchEnd:
        """Answer a batch: the backend gets every waiting message at once and answers them together. Returns
        how it ended, for the caller to record with the lease's release."""
        conversation_id = conversation.id
        ids = [record.id for record in records]
        try:
            turns = [await self._platform.prepare(Turn.from_payload(record.payload)) for record in records]
        except DeliveryError as exc:  # its workspace is gone (uninstalled, its data kept): nobody to answer
            log.error(
                "conversation %s: could not read the turns' messages, closing them unanswered: %s", conversation_id, exc
            )
            return _BatchEnd(TurnStatus.FAILED, f"delivery failed: {exc}", earlier_reply_ts(records), None)
        recovering = any(record.attempts > 0 for record in records)
        if recovering:
            self._observer.lease_taken_over()
        latest = turns[-1]
        # An earlier attempt's message (half-streamed when its worker died) is taken over, not duplicated.
        resume_ts = earlier_reply_ts(records)
        await self._store.start_turns(ids)
        outcome_status, error, reply_ts, tokens = TurnStatus.FAILED, None, resume_ts, None
        try:
            unrecorded_after = turns[0].message_ts if recovering else None
            self._stops[conversation_id] = StopSignal()
            self._watch_stops()
            async with self._platform.reply(latest, resume_ts=resume_ts, unrecorded_after=unrecorded_after) as shown:
                self._streams[conversation_id] = shown
                try:
                    reply = RememberedReply(shown, store=self._store, turn_ids=ids, stored_ts=resume_ts)
                    await reply.remember()
                    try:
                        watched = watch_answer(
                            reply,
                            conversation_id=conversation_id,
                            turn_ids=ids,
                            turns=turns,
                            observer=self._observer,
                            clock=self._clock,
                        )
                        outcome_status, error, tokens = await self._run(conversation, records, turns, watched)
                    except APIError as exc:
                        log.warning("conversation %s: API error: %s", conversation_id, exc)
                        error = str(exc)
                        await reply.send(ReplyFailed(api_failure_reason(exc)))
                    reply_ts = reply.reply_ts
                finally:
                    del self._streams[conversation_id]
                    self._stops.pop(conversation_id, None)
        except DeliveryError as exc:
            log.error(
                "conversation %s (channel %s): Slack refused the reply, closing %d turn(s) unanswered: %s",
                conversation_id,
                latest.channel_id,
                len(ids),
                exc,
            )
            error = f"delivery failed: {exc}"
        return _BatchEnd(outcome_status, error, reply_ts, tokens)

    async def _give_up(self, conversation_id: int, records: Sequence[TurnRecord]) -> None:
        """Turns whose every attempt died with its worker end FAILED, and the person is told."""
        ids = [record.id for record in records]
        log.error(
            "conversation %s: giving up on %d turn(s) after %d attempts each",
            conversation_id,
            len(ids),
            self._max_attempts,
        )
        progress = batch_progress(records)
        if progress is not None:
            conversation = await self._store.get_conversation(conversation_id)
            try:
                await self._backend.cancel(self._state_of(conversation), progress)
            except APIError as exc:
                log.warning("conversation %s: could not cancel the abandoned answer: %s", conversation_id, exc)
        resume_ts = earlier_reply_ts(records)
        error = f"gave up after {self._max_attempts} attempts"
        try:
            first, latest = Turn.from_payload(records[0].payload), Turn.from_payload(records[-1].payload)
            async with self._platform.reply(latest, resume_ts=resume_ts, unrecorded_after=first.message_ts) as reply:
                await reply.send(ReplyFailed(GAVE_UP))
                resume_ts = reply.reply_ts
        except DeliveryError as exc:
            log.error("conversation %s: could not tell the person we gave up: %s", conversation_id, exc)
        await self._store.update_turns(ids, status=TurnStatus.FAILED.value, error=error, reply_ts=resume_ts)

    def _state_of(self, conversation: Conversation) -> BackendState | None:
        """The conversation's state on the backend in use; a state another backend wrote is not ours."""
        return conversation.backend_state if conversation.backend == self._backend.name else None

    async def _run(
        self,
        conversation: Conversation,
        records: Sequence[TurnRecord],
        turns: Sequence[Turn],
        reply: ReplyStream,
    ) -> tuple[TurnStatus, str | None, tuple[int, int] | None]:
        """How the answer ended, and the tokens it took (recorded with its end: usage reports add turns up)."""
        latest = turns[-1]
        conversation_id = conversation.id
        ref = ConversationRef(
            id=conversation.id,
            team_id=conversation.team_id,
            channel_id=conversation.channel_id,
            thread_key=conversation.thread_key,
        )
        progress = batch_progress(records)
        prepared = []
        for turn in turns:
            item = PreparedInput.of(turn)
            for stage in self._input_stages:
                if item.blocked:
                    break
                await stage.process(item, conversation=ref, reply=reply)
            prepared.append(item)
        inputs = tuple(item.user_input() for item in prepared if not item.blocked and not item.is_empty)
        if not inputs and progress is None:
            if any(item.blocked for item in prepared):
                await reply.send(ReplyWithdrawn())  # the refused were told why; no "Thinking…" is left for them
            else:
                await reply.send(ReplyCompleted(NOTHING_TO_ANSWER))  # e.g. a bare mention
            return TurnStatus.ANSWERED, None, None
        profile, _ = await self._profiles.for_channel(team_id=latest.team_id, channel_id=latest.channel_id)
        state = self._state_of(conversation)
        since_ts = conversation.history_since

        async def history() -> Sequence[HistoryMessage]:
            return await self._platform.history(turns[0], since_ts=since_ts)

        request = AnswerRequest(
            conversation=ref,
            state=state,
            progress=progress,
            inputs=inputs,
            history=history,
            profile=profile,
            tools=self._tools,
            tool_context=ToolContext(latest, viewed_channel_id=(conversation.viewing_context or {}).get("channel_id")),
            attempt=max(record.attempts for record in records) + 1,
        )
        ids = [record.id for record in records]
        shown = self._wrap_output(reply, latest)
        noticed = False
        tokens: tuple[int, int] | None = None
        events = self._backend.answer(request)
        stop = self._stops.get(conversation_id) or StopSignal()
        try:
            while not isinstance(event := await stop.next_event(events), _AnswerEnd):
                if isinstance(event, StateChanged):
                    state = event.state
                    await self._store.set_backend_state(conversation_id, backend=self._backend.name, state=state)
                elif isinstance(event, Checkpoint):
                    progress = event.progress
                    bind_api_ids(progress)
                    await self._store.record_progress(ids, progress)
                elif isinstance(event, Usage):
                    tokens = (event.prompt_tokens, event.completion_tokens)
                elif isinstance(event, InputNotice):
                    log.info("conversation %s: file %r not used: %s", conversation_id, event.file_name, event.reason)
                    await reply.notice(refusal(event.file_name, event.reason))
                    noticed = True
                elif isinstance(event, ToolActivity):
                    log.debug("conversation %s: tool %s %s %s", conversation_id, event.tool, event.name, event.status)
                    await shown.send(event)
                elif isinstance(event, AwaitingDecision):
                    # The batch is parked, its lease released: a decision reopens its turns (bot.conversations.mcp).
                    log.info("conversation %s: waiting for a decision", conversation_id)
                    await reply.send(ReplyWithdrawn(event.notice))
                    return TurnStatus.WAITING, None, tokens
                elif isinstance(event, ReplyCompleted) and noticed and not event.text.strip() and not event.files:
                    await reply.send(ReplyWithdrawn())  # nothing usable was shared: the notes are the whole reply
                    return TurnStatus.ANSWERED, None, tokens
                else:
                    await shown.send(event)
                    if isinstance(event, ReplyCompleted):
                        return TurnStatus.ANSWERED, None, tokens
                    if isinstance(event, ReplyFailed):
                        return TurnStatus.FAILED, event.reason, tokens
            if event is _AnswerEnd.STOPPED:
                # The stream to the model ends first (a chat backend's HTTP stream is closed with its iterator),
                # then whatever the server still runs is cancelled; what was shown stays, marked as stopped.
                await _close(events)
                try:
                    await self._backend.cancel(state, progress)
                except APIError as exc:
                    log.warning("conversation %s: could not cancel the stopped answer: %s", conversation_id, exc)
                await shown.send(ReplyStopped())
                log.info("conversation %s: answer stopped on request", conversation_id)
                return TurnStatus.STOPPED, None, tokens
        except AnswerWithheld as exc:
            await self._backend.cancel(state, progress)
            return TurnStatus.FAILED, f"answer withheld: {exc}", tokens
        finally:
            await _close(events)
        raise APIError("the backend ended without an answer")

    def _wrap_output(self, reply: ReplyStream, turn: Turn) -> ReplyStream:
        for stage in self._output_stages:
            reply = stage.wrap(reply, turn=turn)
        return reply


async def _close(events: AsyncIterator[BackendEvent]) -> None:
    """End a backend's answer early: its generator's cleanup runs now (an HTTP stream is closed), not when
    it is collected."""
    if isinstance(events, AsyncGenerator):
        await events.aclose()
