import type { NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, type JsMsg, jetstream } from '@nats-io/jetstream';
import { uuidv7 } from 'uuidv7';
import { DomainError, isDomainError } from '../domain/shared/errors';
import { type IngressMessage, type RejectionRecord, decodeJson, encodeJson } from '../infra/nats/ingress';
import { DurableConsumer } from '../infra/nats/durable-consumer';
import { STREAMS, subjects } from '../infra/nats/names';
import type { Registry } from '../infra/nats/registry';
import type { Logger } from '../infra/log';
import { type Metrics, countDecision } from '../infra/metrics';
import type { Policy } from '../domain/policy/policy';
import type { RegistryView } from '../domain/registry/decide';
import { type RegistryKey, coalescingScope, registryId } from '../domain/registry/events';
import type { LineageState } from '../domain/lineage/state';
import type { LineageCommandHandler } from './handler';
import { applyApproval } from './registry-follower';
import type { RegistryCommandHandler } from './registry-handler';
import { type RegistryGate, UploadIngest } from './uploads';
import type { ObjectStore } from '@nats-io/obj';

export const WORKER_CONSUMER = 'sluice-worker';

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
  ackWaitMs?: number;
  /** The upload object store; without it url_request and finalize are refused. */
  uploads?: ObjectStore;
};

/**
 * Drains the ingress stream: resolve (device, table) → lineage, decide, append. A message is
 * acked only after its decision is durable in the event store; on a transient failure it is
 * nak'ed and comes back. Any number of workers may share the durable consumer.
 */
export class IngressWorker {
  private readonly consumer: DurableConsumer;
  private readonly uploads: UploadIngest;

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
    this.consumer = new DurableConsumer({
      nc: opts.nc,
      stream: STREAMS.ingress,
      config: {
        durable_name: WORKER_CONSUMER,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: (opts.ackWaitMs ?? 30_000) * 1_000_000,
        max_ack_pending: 1000,
      },
      handle: (m) => this.process(m),
      log: opts.log,
      what: 'ingress',
    });
  }

  start(): Promise<void> {
    return this.consumer.start();
  }

  async stop(): Promise<void> {
    await this.consumer.stop();
    await this.uploads.stop();
  }

  private async process(m: JsMsg): Promise<void> {
    let msg: IngressMessage;
    try {
      msg = decodeJson<IngressMessage>(m.data);
    } catch {
      this.opts.log.error({ seq: m.seq }, 'undecodable ingress message dropped (term)');
      m.term();
      return;
    }
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
    if (msg.kind !== 'rows' && msg.kind !== 'telemetry') {
      // Acks of controls, schema observations and upload requests: handled by later stages.
      this.opts.log.debug({ kind: msg.kind, device: msg.device_key }, 'ingress message noted');
      return;
    }
    const device = await registry.resolveDevice(
      msg.project_id,
      msg.topic_slug,
      msg.device_name,
      uuidv7(),
      this.opts.fleetOf?.(msg.topic_slug) ?? null,
    );
    const table = msg.payload.source_table;
    const policy = await registry.policy(msg.project_id);
    // With its content digest: other content under a known batch id is decided (and refused), not
    // mistaken for a retry of the first decision by the event store's dedupe.
    const decisionId =
      msg.payload_digest !== undefined
        ? `${msg.device_key}:${msg.payload.batch_id}:${msg.payload_digest}`
        : `${msg.device_key}:${msg.payload.batch_id}`;
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
      const view = gate?.view;
      const common = {
        project_id: msg.project_id,
        device_id: device.device_id,
        device_name: device.device_name,
        topic_slug: msg.topic_slug,
        new_lineage_id: lineageId,
        new_review_id: uuidv7(),
        new_control_id: uuidv7(),
        new_replay_id: uuidv7(),
        new_write_control_id: uuidv7(),
        now: new Date().toISOString(),
        policy,
        fleet_id: device.fleet_id,
        ...(msg.payload_digest !== undefined ? { payload_digest: msg.payload_digest } : {}),
      };
      const command =
        msg.kind === 'rows'
          ? ({
              type: 'IngestRowBatch',
              data: {
                ...common,
                batch: msg.payload,
                new_resync_id: uuidv7(),
                new_resync_control_id: uuidv7(),
                ...(view ? { registry: view } : {}),
              },
            } as const)
          : ({
              type: 'IngestTelemetryBatch',
              data: { ...common, batch: msg.payload, ...(view ? { registry: view } : {}) },
            } as const);
      try {
        const result = await handler.execute(lineageId, command, { decision_id: decisionId });
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
    const now = new Date().toISOString();
    await this.opts.handler.execute(
      route.lineage_id,
      { type: 'AcknowledgeControl', data: { control_id: controlId, acknowledged_at: now } },
      { decision_id: `ack:${controlId}` },
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
