import type { NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from '@nats-io/jetstream';
import { uuidv7 } from 'uuidv7';
import { DomainError, isDomainError } from '../domain/shared/errors';
import { type IngressMessage, type RejectionRecord, decodeJson, encodeJson } from '../infra/nats/ingress';
import { DurableConsumer } from '../infra/nats/durable-consumer';
import { PartitionLeases } from '../infra/nats/leases';
import { STREAMS, subjects } from '../infra/nats/names';
import { INGRESS_PARTITIONS } from '../infra/nats/partitions';
import type { DeviceRecord, Registry } from '../infra/nats/registry';
import type { Logger } from '../infra/log';
import { type Metrics, countDecision } from '../infra/metrics';
import type { Policy } from '../domain/policy/policy';
import type { RegistryView } from '../domain/registry/decide';
import { type RegistryKey, coalescingScope, registryId } from '../domain/registry/events';
import type { LineageState } from '../domain/lineage/state';
import type { LineageCommandHandler, Outcome } from './handler';
import { type BatchMessage, batchDecisionId, groupBatches, intakeCommand, isBatch } from './intake';
import { applyApproval } from './registry-follower';
import type { RegistryCommandHandler } from './registry-handler';
import { type RegistryGate, UploadIngest } from './uploads';
import { recordSchemaObserve } from './schema-observe';
import type { ObjectStore } from '@nats-io/obj';

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

/** Messages in the ingress work queue not yet acked by a worker (the stream keeps only those). */
export async function ingressBacklog(jsm: JetStreamManager): Promise<number> {
  return (await jsm.streams.info(STREAMS.ingress)).state.messages;
}

export type IngressWorkerOptions = {
  nc: NatsConnection;
  handler: LineageCommandHandler;
  registry: Registry;
  /** Registry entries (coalescing); without it every lineage is governed on its own. */
  registries?: RegistryCommandHandler;
  /** The fleet a new device starts in, by its topic slug (SLUICE_TOPIC_FLEETS). */
  fleetOf?: (slug: string) => string | null;
  log: Logger;
  metrics?: Metrics;
  /** How long a delivered message may go unacked before another delivery (default 10 s). */
  ackWaitMs?: number;
  /** This process among the workers sharing the partitions (default: a new id). */
  memberId?: string;
  /** Replicas of the lease bucket (SLUICE_STREAM_REPLICAS). */
  replicas?: number;
  /** The upload object store; without it url_request and finalize are refused. */
  uploads?: ObjectStore;
};

/**
 * Drains the ingress stream: resolve (device, table) → lineage, decide, append. A message is
 * acked only after its decision is durable in the event store; on a transient failure it is
 * nak'ed and comes back.
 *
 * The stream is split into INGRESS_PARTITIONS partitions by device. Workers share them through
 * leases (infra/nats/leases.ts): each process drains the partitions it holds, one message at a
 * time per partition, so a lineage is decided by one process at a time and in order; when a
 * worker dies, the survivors take its partitions over once its leases expire.
 */
export class IngressWorker {
  private readonly consumers = new Map<number, DurableConsumer>();
  private readonly uploads: UploadIngest;
  private readonly leases: PartitionLeases;

  constructor(private readonly opts: IngressWorkerOptions) {
    this.uploads = new UploadIngest({
      ...opts,
      recordRejection: (msg, code, message) => this.recordRejection(msg, code, message),
      ...(opts.registries
        ? {
            coalescing: {
              gate: (...a) => this.registryGate(...a),
              settle: (gate, lineageId, deviceId, state) => this.settleGate(gate, lineageId, deviceId, state),
            },
          }
        : {}),
    });
    this.leases = new PartitionLeases({
      nc: opts.nc,
      group: 'worker',
      partitions: INGRESS_PARTITIONS,
      memberId: opts.memberId ?? uuidv7(),
      ...(opts.replicas !== undefined ? { replicas: opts.replicas } : {}),
      onAcquire: (p) => this.startPartition(p),
      onRelease: (p) => this.stopPartition(p),
      log: opts.log,
      onRound: (owned) => opts.metrics?.partitionsOwned.set({ group: 'worker' }, owned.length),
    });
  }

  /** Partitions this process drains now. */
  get partitions(): number[] {
    return this.leases.partitionsOwned;
  }

  async start(): Promise<void> {
    await this.drainLegacy();
    await this.leases.start();
  }

  async stop(): Promise<void> {
    await this.leases.stop();
    await Promise.all([...this.consumers.keys()].map((p) => this.stopPartition(p)));
    await this.uploads.stop();
  }

  private async startPartition(p: number): Promise<void> {
    if (this.consumers.has(p)) return;
    const consumer = new DurableConsumer({
      nc: this.opts.nc,
      stream: STREAMS.ingress,
      config: ingressConsumerConfig(p, this.opts.ackWaitMs),
      handle: (m) => this.processMany([m]),
      handleMany: (ms) => {
        this.opts.metrics?.ingressMessages.inc(ms.length);
        return this.processMany(ms);
      },
      log: this.opts.log,
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
    const jsm = await jetstreamManager(this.opts.nc);
    const exists = async () => jsm.consumers.info(STREAMS.ingress, LEGACY_CONSUMER).catch(() => undefined);
    if (!(await exists())) return;
    this.opts.log.info('draining the ingress consumer of the unpartitioned layout');
    const legacy = new DurableConsumer({
      nc: this.opts.nc,
      stream: STREAMS.ingress,
      config: { durable_name: LEGACY_CONSUMER },
      handle: (m) => this.process(m),
      log: this.opts.log,
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

  private decode(m: JsMsg): IngressMessage | undefined {
    try {
      return decodeJson<IngressMessage>(m.data);
    } catch {
      this.opts.log.error({ seq: m.seq }, 'undecodable ingress message dropped (term)');
      m.term();
      return undefined;
    }
  }

  /**
   * What queued up in a partition while the last decision ran: the batches of one lineage are
   * decided together, as one append (one event-store message for the projections instead of one
   * per batch); everything else goes one by one, in delivery order.
   */
  private async processMany(ms: readonly JsMsg[]): Promise<void> {
    const items = ms.flatMap((m) => {
      const msg = this.decode(m);
      return msg ? [{ m, msg }] : [];
    });
    for (const unit of groupBatches(items)) {
      if (unit.length === 1) await this.process(unit[0]!.m, unit[0]!.msg);
      else await this.decideTogether(unit as { m: JsMsg; msg: BatchMessage }[]);
    }
  }

  /** The device's record, registered (in its topic's fleet) on first sight. */
  private deviceOf(msg: IngressMessage): Promise<DeviceRecord> {
    return this.opts.registry.resolveDevice(
      msg.project_id,
      msg.topic_slug,
      msg.device_name,
      uuidv7(),
      this.opts.fleetOf?.(msg.topic_slug) ?? null,
    );
  }

  private async decideTogether(unit: readonly { m: JsMsg; msg: BatchMessage }[]): Promise<void> {
    const { registry, handler, metrics } = this.opts;
    const first = unit[0]!.msg;
    let outcomes: Outcome[];
    try {
      const device = await this.deviceOf(first);
      const policy = await registry.policy(first.project_id);
      if (
        this.opts.registries &&
        coalescingScope(policy.schema_coalescing_mode, first.project_id, device.fleet_id)
      ) {
        // Under coalescing each batch passes the registry gate on its own.
        for (const { m, msg } of unit) await this.process(m, msg);
        return;
      }
      const { lineageId } = await registry.resolveLineage(
        device.device_id,
        first.payload.source_table,
        uuidv7(),
      );
      const now = handler.clock().toISOString();
      const r = await handler.executeAll(
        lineageId,
        unit.map(({ msg }) => ({
          command: intakeCommand(msg, device, lineageId, policy, now),
          meta: { decision_id: batchDecisionId(msg), now },
        })),
      );
      outcomes = r.outcomes;
    } catch (err) {
      this.opts.log.warn(
        { err: (err as Error).message, device: first.device_key, batches: unit.length },
        'ingress decision failed; will retry',
      );
      for (const { m } of unit) m.nak(1000);
      return;
    }
    for (const [i, { m, msg }] of unit.entries()) {
      const o = outcomes[i]!;
      if (o.ok) {
        countDecision(metrics, o.events);
        m.ack();
      } else if (o.error.code === 'lineage_deleted') {
        await this.process(m, msg); // the one-by-one path starts the lineage that replaces it
      } else {
        await this.recordRejection(msg, o.error.code, o.error.message);
        m.ack();
      }
    }
  }

  private async process(m: JsMsg, decoded?: IngressMessage): Promise<void> {
    const msg = decoded ?? this.decode(m);
    if (!msg) return;
    if (msg.kind === 'request') {
      // A finalize may take minutes (a whole object, chunk by chunk): it runs beside the loop and
      // acks its message itself once every chunk is appended. A verify_report goes the same way
      // (worker/uploads.ts routes it), so every device request is handled in one place.
      this.uploads.handle(msg, m);
      return;
    }
    try {
      await this.decide(msg);
      m.ack();
    } catch (err) {
      if (isDomainError(err)) {
        await this.recordRejection(msg, err.code, err.message);
        m.ack();
        return;
      }
      this.opts.log.warn(
        { err: (err as Error).message, device: msg.device_key },
        'ingress decision failed; will retry',
      );
      m.nak(1000);
    }
  }

  private async decide(msg: IngressMessage): Promise<void> {
    const { registry, handler, metrics } = this.opts;
    if (msg.kind === 'ack') {
      await this.acknowledge(msg.device_key, msg.payload.control_id);
      return;
    }
    if (msg.kind === 'schema') {
      await recordSchemaObserve(this.opts, msg);
      return;
    }
    if (!isBatch(msg)) {
      // Upload requests: handled by later stages.
      this.opts.log.debug({ kind: msg.kind, device: msg.device_key }, 'ingress message noted');
      return;
    }
    const device = await this.deviceOf(msg);
    const table = msg.payload.source_table;
    const policy = await registry.policy(msg.project_id);
    const decisionId = batchDecisionId(msg);
    let { lineageId } = await registry.resolveLineage(device.device_id, table, uuidv7());
    for (let attempt = 0; attempt < 3; attempt++) {
      // Telemetry too: one review per schema in scope, coalesced edge_ts_p…/edge_ts_f… tables.
      const gate =
        msg.kind === 'rows' || msg.kind === 'telemetry'
          ? await this.registryGate(
              msg.project_id,
              device.fleet_id,
              lineageId,
              table,
              msg.payload.schema_hash,
              policy,
            )
          : undefined;
      const now = handler.clock().toISOString();
      const command = intakeCommand(msg, device, lineageId, policy, now, gate?.view);
      try {
        const result = await handler.execute(lineageId, command, { decision_id: decisionId, now });
        countDecision(metrics, result.events);
        if (gate) await this.settleGate(gate, lineageId, device.device_id, result.state);
        return;
      } catch (err) {
        if (isDomainError(err) && err.code === 'lineage_deleted') {
          // A deleted lineage is over; the same (device, table) starts a new one.
          lineageId = await registry.replaceLineage(device.device_id, table, lineageId, uuidv7());
          continue;
        }
        throw err;
      }
    }
    throw new Error(`could not settle the lineage of ${msg.device_key} ${table}`);
  }

  /**
   * Coalescing on: the registry key of a rows decision of this lineage, and the entry's view
   * unless the lineage approved this hash already (nothing to ask). Batches and uploaded chunks
   * go through the same gate.
   */
  private async registryGate(
    projectId: string,
    fleetId: string | null,
    lineageId: string,
    table: string,
    schemaHash: string,
    policy: Policy,
  ): Promise<RegistryGate | undefined> {
    if (!this.opts.registries) return undefined;
    const scope = coalescingScope(policy.schema_coalescing_mode, projectId, fleetId);
    if (!scope) return undefined;
    const key: RegistryKey = {
      project_id: projectId,
      ...scope,
      source_table: table,
      schema_hash: schemaHash,
    };
    const view = await this.registryView(lineageId, key);
    return view ? { key, view } : { key };
  }

  /** After the lineage's own decision is durable: enrol with the entry, or offer it its approval. */
  private async settleGate(
    gate: RegistryGate,
    lineageId: string,
    deviceId: string,
    state: LineageState,
  ): Promise<void> {
    if (gate.view) await this.enroll(lineageId, deviceId, gate.key, gate.view, state);
    else await this.adoptOwnApproval(lineageId, gate.key, state);
  }

  /** The registry entry's view, unless the lineage approved this hash already (nothing to ask). */
  private async registryView(lineageId: string, key: RegistryKey): Promise<RegistryView | undefined> {
    const state = await this.opts.handler.peek(lineageId);
    if (state.status === 'registered' && state.approved_hash === key.schema_hash) return undefined;
    return this.opts.registries!.view(key);
  }

  /**
   * A lineage that now waits for the entry joins it (the first one opens its review). The
   * lineage's own decision is durable first, so a crash in between only repeats this step when
   * the batch is redelivered. If the entry turned out approved, the lineage takes it at once.
   */
  private async enroll(
    lineageId: string,
    deviceId: string,
    key: RegistryKey,
    view: RegistryView,
    state: LineageState,
  ): Promise<void> {
    const registries = this.opts.registries!;
    if (state.status !== 'registered' || (state.awaiting ?? {})[key.schema_hash] !== view.registry_id) return;
    if (view.status === 'rejected') return; // a person said no for the whole scope: it stays paused
    const r = await registries.execute(
      view.registry_id,
      {
        type: 'EnrollLineage',
        data: {
          ...key,
          lineage_id: lineageId,
          device_id: deviceId,
          schema_columns: state.schemas[key.schema_hash] ?? null,
          new_review_id: uuidv7(),
        },
      },
      { decision_id: `enroll:${lineageId}:${uuidv7()}`, correlation_id: view.registry_id },
    );
    if (r.state.status === 'registered' && r.state.decision?.kind === 'approved') {
      await applyApproval(this.opts.handler, r.state, lineageId, { causation_id: view.registry_id });
    }
  }

  /**
   * Coalescing is on but the lineage still materializes on its own (it was approved before the
   * switch and the consolidation missed it, or a review of its own was decided since): its
   * approval becomes the entry's, unless the entry was decided already, and it joins the table.
   */
  private async adoptOwnApproval(lineageId: string, key: RegistryKey, state: LineageState): Promise<void> {
    if (state.status !== 'registered' || state.kind !== 'rows' || state.coalesced) return;
    if (state.approved_hash !== key.schema_hash) return;
    const id = registryId(key);
    const review = [...state.reviews]
      .reverse()
      .find((r) => r.status === 'approved' && r.schema_hash === key.schema_hash);
    const r = await this.opts.registries!.execute(
      id,
      {
        type: 'AdoptApproval',
        data: {
          ...key,
          lineage_id: lineageId,
          review_id: review?.review_id ?? null,
          bindings: state.bindings,
          schema_columns: state.schemas[key.schema_hash] ?? null,
        },
      },
      { decision_id: `adopt:${lineageId}:${uuidv7()}`, correlation_id: id },
    );
    if (r.state.status === 'registered' && r.state.decision?.kind === 'approved') {
      await applyApproval(this.opts.handler, r.state, lineageId, { causation_id: r.events[0]?.id ?? id });
    }
  }

  /** A device's ACK of a control: only the device the control was sent to can acknowledge it. */
  private async acknowledge(deviceKey: string, controlId: string): Promise<void> {
    const route = await this.opts.registry.getControl(controlId);
    if (!route || !route.topic.startsWith(`${deviceKey}/`)) {
      throw new DomainError('unknown_control_id', `control ${controlId} is not pending for this device`);
    }
    const now = this.opts.handler.clock().toISOString();
    await this.opts.handler.execute(
      route.lineage_id,
      { type: 'AcknowledgeControl', data: { control_id: controlId, acknowledged_at: now } },
      { decision_id: `ack:${controlId}`, now },
    );
    await this.opts.registry.deleteControl(controlId);
  }

  private async recordRejection(msg: IngressMessage, code: string, message: string): Promise<void> {
    const record = {
      device_key: msg.device_key,
      project_id: msg.project_id,
      kind: msg.kind,
      topic: `${msg.device_key}/${msg.kind}`,
      code,
      message,
      received_at: msg.received_at,
      payload_excerpt: JSON.stringify(msg.payload).slice(0, 256),
    } as RejectionRecord;
    this.opts.metrics?.rejections.inc({ code });
    await jetstream(this.opts.nc).publish(subjects.rejected(msg.device_key), encodeJson(record));
  }
}
