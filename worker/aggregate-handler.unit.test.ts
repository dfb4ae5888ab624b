import { DomainError, isDomainError } from '../domain/shared/errors';
import { type Appended, ConcurrencyError, type EventStore, isConcurrencyError } from '../domain/shared/ports';
import { InMemoryEventStore } from '../infra/memory/event-store';
import { createMetrics } from '../infra/metrics';
import { AggregateHandler, type ConflictRetry } from './aggregate-handler';

/** A counter aggregate: each event adds its `n`. */
type Add = Readonly<{ n: number }>;
const fast: ConflictRetry = { retries: 3, firstDelayMs: 1, maxDelayMs: 2 };
const ID = 'counter';

/** Lets `conflicts` appends fail as if another writer had got there first. */
class Contended implements EventStore<Add> {
  appends = 0;
  constructor(
    readonly inner: EventStore<Add>,
    private conflicts: number,
  ) {}
  load(id: string, from?: number) {
    return this.inner.load(id, from);
  }
  async append(id: string, events: readonly Add[], expected: number, decisionId: string): Promise<Appended> {
    this.appends++;
    if (this.conflicts-- > 0) throw new ConcurrencyError(id, expected);
    return this.inner.append(id, events, expected, decisionId);
  }
}

const handler = (store: EventStore<Add>, metrics = createMetrics()) => ({
  metrics,
  h: new AggregateHandler<number, Add>({
    store,
    evolve: (s, e) => s + e.n,
    initialState: () => 0,
    metrics,
    retry: fast,
  }),
});

const conflicts = async (m: ReturnType<typeof createMetrics>) =>
  (await m.conflicts.get()).values[0]?.value ?? 0;

describe('aggregate handler', () => {
  it('decides again on the reloaded state after a conflict, and counts the conflict', async () => {
    const shared = new InMemoryEventStore<Add>();
    const { h, metrics } = handler(shared);
    await h.decide(ID, () => ({ events: [{ n: 1 }], decision_id: 'a', result: null }));
    // Another writer appends behind this handler's cache.
    await shared.append(ID, [{ n: 10 }], (await shared.load(ID)).version, 'other');
    const seen: number[] = [];
    const r = await h.decide(ID, (state) => {
      seen.push(state);
      return { events: [{ n: 100 }], decision_id: 'b', result: state };
    });
    expect(seen).toEqual([1, 11]);
    expect(r).toMatchObject({ result: 11, state: 111, duplicate: false, events: [{ n: 100 }] });
    expect(await conflicts(metrics)).toBe(1);
  });

  it('gives up with the ConcurrencyError after its retries', async () => {
    const store = new Contended(new InMemoryEventStore<Add>(), Number.POSITIVE_INFINITY);
    const { h, metrics } = handler(store);
    const err = await h
      .decide(ID, () => ({ events: [{ n: 1 }], decision_id: 'a', result: null }))
      .catch((e: unknown) => e);
    expect(isConcurrencyError(err)).toBe(true);
    expect(store.appends).toBe(fast.retries + 1);
    expect(await conflicts(metrics)).toBe(fast.retries);
  });

  it('retries nothing but conflicts', async () => {
    const { h, metrics } = handler(new InMemoryEventStore<Add>());
    let calls = 0;
    const err = await h
      .decide(ID, () => {
        calls++;
        throw new DomainError('not_found', 'no such counter');
      })
      .catch((e: unknown) => e);
    expect(isDomainError(err) && err.code).toBe('not_found');
    expect(calls).toBe(1);
    expect(await conflicts(metrics)).toBe(0);
  });

  it('appends nothing when nothing is decided', async () => {
    const store = new Contended(new InMemoryEventStore<Add>(), 0);
    const { h } = handler(store);
    const r = await h.decide(ID, () => ({ events: [], decision_id: 'a', result: 'nothing' }));
    expect(r).toEqual({ result: 'nothing', events: [], state: 0, version: 0, duplicate: false });
    expect(store.appends).toBe(0);
  });

  it('reports a retried decision as a duplicate with what is durable', async () => {
    const shared = new InMemoryEventStore<Add>();
    await handler(shared).h.decide(ID, () => ({ events: [{ n: 5 }], decision_id: 'a', result: null }));
    const { h } = handler(shared);
    // A cold handler decides on version 0 again, as a redelivered message would after a lost ack.
    const r = await h.decide(ID, () => ({ events: [{ n: 5 }], decision_id: 'a', result: null }));
    expect(r).toMatchObject({ events: [], state: 5, duplicate: true });
  });
});
