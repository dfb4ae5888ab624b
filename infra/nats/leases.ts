import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { type KV, Kvm } from '@nats-io/kv';
import { KV_BUCKETS } from './names';
import { fnv1a } from './partitions';

/** A lease lives this long unless renewed; a dead owner's partitions are taken over after it. */
export const LEASE_TTL_MS = 6_000;
const TICK_MS = LEASE_TTL_MS / 3;

export type PartitionLeaseOptions = Readonly<{
  nc: NatsConnection;
  /** Who shares the partitions (`worker`); each group has its own members and leases. */
  group: string;
  partitions: number;
  /** This process; unique per process (a restarted process is a new member). */
  memberId: string;
  replicas?: number;
  /** Start the work of a partition; called once per acquisition. */
  onAcquire: (partition: number) => Promise<void>;
  /** Stop the work of a partition and wait for it: called before the lease is given back. */
  onRelease: (partition: number) => Promise<void>;
  log: Readonly<{ warn(obj: object, msg?: string): void }>;
  /** Called after every round (tests and metrics read the partitions owned). */
  onRound?: (owned: readonly number[]) => void;
}>;

/**
 * Partitions shared among the live members of a group through leases in a JetStream KV bucket
 * whose entries expire after LEASE_TTL_MS.
 *
 * Every round (a third of the TTL) a member renews its heartbeat key and its leases (a compare-
 * and-set on the revision, so a lease taken over by another member is noticed and dropped), counts
 * the live members, gives back what it holds above its fair share (`ceil(partitions / members)`)
 * and takes free partitions up to it. A member that dies stops renewing; within a TTL its leases
 * and heartbeat expire and the survivors take its share. Counting members reads the bucket's
 * subject list (stream info, answered by the stream's leader) and every lease is a direct get: no
 * round creates a consumer, so it goes on while a node of the cluster is down.
 *
 * A lease only decides who works, never what is correct: a member paused past its TTL may still
 * finish a decision, and the event store's optimistic concurrency keeps that one safe.
 */
export class PartitionLeases {
  private kv: KV | undefined;
  private jsm: JetStreamManager | undefined;
  private readonly owned = new Map<number, number>(); // partition → lease revision
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(private readonly o: PartitionLeaseOptions) {}

  get partitionsOwned(): number[] {
    return [...this.owned.keys()].sort((a, b) => a - b);
  }

  async start(): Promise<void> {
    this.jsm = await jetstreamManager(this.o.nc);
    this.kv = await new Kvm(this.o.nc).create(KV_BUCKETS.leases, {
      history: 1,
      ttl: LEASE_TTL_MS,
      replicas: this.o.replicas ?? 1,
    });
    await this.tick();
    this.timer = setInterval(() => {
      this.round = this.round.then(() => this.tick());
    }, TICK_MS);
  }

  /** Give every partition back (work stopped first) and leave the group at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.round;
    await Promise.all(this.partitionsOwned.map((p) => this.release(p)));
    await this.jsm?.streams
      .purge(`KV_${KV_BUCKETS.leases}`, { filter: this.subject(this.memberKey(this.o.memberId)) })
      .catch(() => undefined);
  }

  private memberKey(id: string): string {
    return `${this.o.group}.m.${id}`;
  }
  private leaseKey(p: number): string {
    return `${this.o.group}.p.${p}`;
  }
  private subject(key: string): string {
    return `$KV.${KV_BUCKETS.leases}.${key}`;
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.kv!.put(this.memberKey(this.o.memberId), JSON.stringify({ at: Date.now() }));
      await this.renew();
      const members = await this.liveMembers();
      const share = Math.ceil(this.o.partitions / Math.max(1, members));
      // Given back together: each waits for its partition's work to stop, and a round that gave
      // them back one by one would outlast the leases it did not renew meanwhile.
      const extra = this.partitionsOwned.slice(share);
      await Promise.all(extra.map((p) => this.release(p)));
      if (this.owned.size < share) await this.acquire(share);
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message, group: this.o.group }, 'partition lease round failed');
    }
    this.o.onRound?.(this.partitionsOwned);
  }

  private async renew(): Promise<void> {
    for (const [p, revision] of [...this.owned]) {
      try {
        this.owned.set(p, await this.kv!.update(this.leaseKey(p), this.o.memberId, revision));
      } catch (err) {
        // Someone else holds it now (ours expired): stop working on it; theirs is the lease.
        const current = await this.kv!.get(this.leaseKey(p)).catch(() => null);
        if (current?.operation === 'PUT' && current.string() === this.o.memberId) {
          this.owned.set(p, current.revision);
          continue;
        }
        if (current === null || current.operation !== 'PUT') {
          // It expired while the bucket could not be written (a node of the cluster down longer
          // than the TTL) and nobody took it since: take it back without stopping the work.
          const revision = await this.kv!.create(this.leaseKey(p), this.o.memberId).catch(() => undefined);
          if (revision !== undefined) {
            this.owned.set(p, revision);
            continue;
          }
        }
        this.o.log.warn({ partition: p, err: (err as Error).message }, 'partition lease lost');
        this.owned.delete(p);
        await this.o.onRelease(p);
      }
    }
  }

  private async liveMembers(): Promise<number> {
    const info = await this.jsm!.streams.info(`KV_${KV_BUCKETS.leases}`, {
      subjects_filter: this.subject(`${this.o.group}.m.*`),
    });
    const members = Object.keys(info.state.subjects ?? {}).length;
    return Math.max(1, members);
  }

  /** Take free partitions up to `share`, starting at a place of our own so members spread out. */
  private async acquire(share: number): Promise<void> {
    const n = this.o.partitions;
    const start = fnv1a(this.o.memberId) % n;
    for (let i = 0; i < n && this.owned.size < share && !this.stopped; i++) {
      const p = (start + i) % n;
      if (this.owned.has(p)) continue;
      const revision = await this.take(p);
      if (revision === undefined) continue;
      this.owned.set(p, revision);
      try {
        await this.o.onAcquire(p);
      } catch (err) {
        this.o.log.warn({ partition: p, err: (err as Error).message }, 'partition could not start');
        await this.release(p);
      }
    }
  }

  /**
   * The lease of a free partition, or of one this member held before it restarted (same member
   * id: it takes it back at once instead of waiting for it to expire); undefined if another holds it.
   */
  private async take(p: number): Promise<number | undefined> {
    try {
      return await this.kv!.create(this.leaseKey(p), this.o.memberId);
    } catch {
      const held = await this.kv!.get(this.leaseKey(p)).catch(() => null);
      if (held?.operation !== 'PUT' || held.string() !== this.o.memberId) return undefined;
      return this.kv!.update(this.leaseKey(p), this.o.memberId, held.revision).catch(() => undefined);
    }
  }

  private async release(p: number): Promise<void> {
    const revision = this.owned.get(p);
    this.owned.delete(p);
    await this.o.onRelease(p);
    if (revision !== undefined) {
      await this.kv!.delete(this.leaseKey(p), { previousSeq: revision }).catch(() => undefined);
    }
  }
}
