import type { NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamManager,
  type JsMsg,
  jetstreamManager,
} from '@nats-io/jetstream';
import { uuidv7 } from 'uuidv7';
import { DurableConsumer } from '../infra/nats/durable-consumer';
import { PartitionLeases } from '../infra/nats/leases';
import { STREAMS, subjects } from '../infra/nats/names';
import { INGRESS_PARTITIONS } from '../infra/nats/partitions';
import type { Logger } from '../infra/log';
import type { Metrics } from '../infra/metrics';

/** The consumer of one ingress partition, shared by every worker; one owner at a time drains it. */
export const workerConsumer = (partition: number) => `sluice-worker-p${partition}`;
/** The single consumer of the layout before partitions; drained and removed at start. */
const LEGACY_CONSUMER = 'sluice-worker';

export function ingressConsumerConfig(partition: number, ackWaitMs = 10_000) {
  return {
    durable_name: workerConsumer(partition),
    filter_subject: subjects.ingressPartition(partition),
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: ackWaitMs * 1_000_000,
    max_ack_pending: 1000,
  };
}

/**
 * Messages in the ingress work queue not yet acked by a worker: what the partition consumers have
 * still to deliver or see acked. Not the stream's message count: a nats-server killed -9 can come
 * back with a consumer's acks on disk but not the work queue's matching deletions, and those
 * messages, already decided, are never delivered again (docs/faults.md, "Ingress backlog after a broker crash").
 * Before every partition has its consumer (no worker started yet) every message counts.
 */
export async function ingressBacklog(jsm: JetStreamManager): Promise<number> {
  const names = new Set(Array.from({ length: INGRESS_PARTITIONS }, (_, p) => workerConsumer(p)));
  const consumers = await jsm.consumers.list(STREAMS.ingress).next();
  const partitions = consumers.filter((c) => names.has(c.name));
  if (partitions.length < INGRESS_PARTITIONS) return (await jsm.streams.info(STREAMS.ingress)).state.messages;
  return partitions.reduce((n, c) => n + c.num_pending + c.num_ack_pending, 0);
}

export type IngressPartitionsOptions = Readonly<{
  nc: NatsConnection;
  log: Logger;
  metrics?: Metrics;
  /** How long a delivered message may go unacked before another delivery (default 10 s). */
  ackWaitMs?: number;
  /** This process among the workers sharing the partitions (default: a new id). */
  memberId?: string;
  /** Replicas of the lease bucket (SLUICE_STREAM_REPLICAS). */
  replicas?: number;
  /**
   * Handles what one partition delivered, in delivery order: what queued up while the previous
   * call ran comes together. It acks, naks or terms each message itself.
   */
  handle: (ms: readonly JsMsg[]) => Promise<void>;
}>;

/**
 * The ingress partitions this process drains. The stream is split into INGRESS_PARTITIONS
 * partitions by device. Workers share them through leases (infra/nats/leases.ts): each process
 * drains the partitions it holds, one step at a time per partition, so a lineage is decided by one
 * process at a time and in order; when a worker dies, the survivors take its partitions over once
 * its leases expire.
 */
export class IngressPartitions {
  private readonly consumers = new Map<number, DurableConsumer>();
  private readonly leases: PartitionLeases;

  constructor(private readonly o: IngressPartitionsOptions) {
    this.leases = new PartitionLeases({
      nc: o.nc,
      group: 'worker',
      partitions: INGRESS_PARTITIONS,
      memberId: o.memberId ?? uuidv7(),
      ...(o.replicas !== undefined ? { replicas: o.replicas } : {}),
      onAcquire: (p) => this.startPartition(p),
      onRelease: (p) => this.stopPartition(p),
      log: o.log,
      onRound: (owned) => o.metrics?.partitionsOwned.set({ group: 'worker' }, owned.length),
    });
  }

  /** Partitions this process drains now. */
  get owned(): number[] {
    return this.leases.partitionsOwned;
  }

  async start(): Promise<void> {
    await this.drainLegacy();
    await this.leases.start();
  }

  /** Give the leases back and stop every partition's consumer once what it fetched is handled. */
  async stop(): Promise<void> {
    await this.leases.stop();
    await Promise.all([...this.consumers.keys()].map((p) => this.stopPartition(p)));
  }

  private async startPartition(p: number): Promise<void> {
    if (this.consumers.has(p)) return;
    const consumer = new DurableConsumer({
      nc: this.o.nc,
      stream: STREAMS.ingress,
      config: ingressConsumerConfig(p, this.o.ackWaitMs),
      handle: (m) => this.o.handle([m]),
      handleMany: (ms) => {
        this.o.metrics?.ingressMessages.inc(ms.length);
        return this.o.handle(ms);
      },
      log: this.o.log,
      what: `ingress partition ${p}`,
      handOff: true,
    });
    this.consumers.set(p, consumer);
    await consumer.start();
  }

  private async stopPartition(p: number): Promise<void> {
    const consumer = this.consumers.get(p);
    this.consumers.delete(p);
    await consumer?.stop();
  }

  /**
   * An ingress stream from before partitions has one unfiltered consumer, which a work queue does
   * not allow beside filtered ones: drain what it holds, then remove it. Any worker may do it;
   * the others wait until it is gone.
   */
  private async drainLegacy(): Promise<void> {
    const jsm = await jetstreamManager(this.o.nc);
    const exists = async () => jsm.consumers.info(STREAMS.ingress, LEGACY_CONSUMER).catch(() => undefined);
    if (!(await exists())) return;
    this.o.log.info('draining the ingress consumer of the unpartitioned layout');
    const legacy = new DurableConsumer({
      nc: this.o.nc,
      stream: STREAMS.ingress,
      config: { durable_name: LEGACY_CONSUMER },
      handle: (m) => this.o.handle([m]),
      log: this.o.log,
      what: 'ingress (unpartitioned)',
      handOff: true,
    });
    await legacy.start();
    for (;;) {
      const info = await exists();
      if (!info) break;
      if (info.num_pending === 0 && info.num_ack_pending === 0) {
        await jsm.consumers.delete(STREAMS.ingress, LEGACY_CONSUMER).catch(() => undefined);
        break;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    await legacy.stop();
  }
}
