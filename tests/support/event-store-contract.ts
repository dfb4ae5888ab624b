import { uuidv7 } from 'uuidv7';
import type { LineageEvent, StoredEvent } from '../../domain/lineage/events';
import type { RegistryEvent } from '../../domain/registry/events';
import { type EventStore, isConcurrencyError } from '../../domain/shared/ports';

export type EventStoreAdapter<E> = Readonly<{
  /** A store to test. Every case names its own new streams, so stores may share a server. */
  make: () => Promise<EventStore<E>>;
  /** An event of the store's aggregate, told apart from others by `tag`. */
  event: (tag: string) => E;
}>;

/**
 * The event store port's contract (domain/shared/ports.ts), one suite for every adapter: the
 * in-memory one (unit) and each JetStream one (int, against a real nats-server).
 */
export function eventStoreContract<E>(name: string, adapter: EventStoreAdapter<E>): void {
  describe(`event store contract: ${name}`, () => {
    let store: EventStore<E>;
    const ev = adapter.event;
    const conflictOf = (p: Promise<unknown>) => p.then(() => undefined).catch((e: unknown) => e);

    beforeEach(async () => {
      store = await adapter.make();
    });

    it('reads an unknown stream as empty at version 0', async () => {
      expect(await store.load(uuidv7())).toEqual({ events: [], version: 0 });
    });

    it('appends to a new stream with expected version 0 and reads the events back in order', async () => {
      const id = uuidv7();
      const [a, b, c] = [ev('a'), ev('b'), ev('c')];
      const first = await store.append(id, [a, b], 0, uuidv7());
      expect(first.duplicate).toBe(false);
      const second = await store.append(id, [c], first.version, uuidv7());
      expect(second.duplicate).toBe(false);
      expect(second.version).toBeGreaterThan(first.version);
      expect(await store.load(id)).toEqual({ events: [a, b, c], version: second.version });
    });

    it('rejects an append on a version the stream has moved past with a ConcurrencyError', async () => {
      const id = uuidv7();
      const first = await store.append(id, [ev('a')], 0, uuidv7());
      const second = await store.append(id, [ev('b')], first.version, uuidv7());
      const stale = await conflictOf(store.append(id, [ev('c')], first.version, uuidv7()));
      expect(isConcurrencyError(stale)).toBe(true);
      expect(stale).toMatchObject({ streamId: id, expected: first.version });
      // 0 claims the stream is new; a version ahead of it was never handed out.
      expect(isConcurrencyError(await conflictOf(store.append(id, [ev('c')], 0, uuidv7())))).toBe(true);
      const ahead = store.append(id, [ev('c')], second.version + 1_000, uuidv7());
      expect(isConcurrencyError(await conflictOf(ahead))).toBe(true);
      const loaded = await store.load(id);
      expect(loaded.version).toBe(second.version);
      expect(loaded.events).toHaveLength(2);
    });

    it('treats a retried append (same decision id, ack lost) as already done', async () => {
      const id = uuidv7();
      const decision = uuidv7();
      const first = await store.append(id, [ev('a')], 0, decision);
      const again = await store.append(id, [ev('a')], 0, decision);
      expect(again).toEqual({ version: first.version, duplicate: true });
      expect((await store.load(id)).events).toHaveLength(1);
    });

    it('scopes decision ids to their stream', async () => {
      const decision = uuidv7();
      const a = await store.append(uuidv7(), [ev('a')], 0, decision);
      const b = await store.append(uuidv7(), [ev('b')], 0, decision);
      expect(a.duplicate).toBe(false);
      expect(b.duplicate).toBe(false);
    });

    it('loads from a version onward', async () => {
      const id = uuidv7();
      const [x, y] = [ev('x'), ev('y')];
      const a = await store.append(id, [x], 0, uuidv7());
      const b = await store.append(id, [y], a.version, uuidv7());
      expect(await store.load(id, a.version)).toEqual({ events: [y], version: b.version });
      expect(await store.load(id, b.version)).toEqual({ events: [], version: b.version });
    });

    it('keeps streams apart', async () => {
      const [x, y] = [uuidv7(), uuidv7()];
      const [x1, y1, y2] = [ev('x1'), ev('y1'), ev('y2')];
      await store.append(x, [x1], 0, uuidv7());
      await store.append(y, [y1, y2], 0, uuidv7());
      expect((await store.load(x)).events).toEqual([x1]);
      expect((await store.load(y)).events).toEqual([y1, y2]);
    });
  });
}

const stored = <E>(e: E): StoredEvent<E> => ({
  ...e,
  id: uuidv7(),
  occurred_at: new Date().toISOString(),
  metadata: { causation_id: 'c', correlation_id: 'c' },
});

/** A stored lineage event whose `reason` is the tag. */
export const lineageEvent = (tag: string): StoredEvent<LineageEvent> =>
  stored<LineageEvent>({ type: 'LineageDeleted', data: { reason: tag } });

/** A stored registry event whose `reason` is the tag. */
export const registryEvent = (tag: string): StoredEvent<RegistryEvent> =>
  stored<RegistryEvent>({
    type: 'RegistryReviewRejected',
    data: { review_id: uuidv7(), action_version: 1, reason: tag },
  });
