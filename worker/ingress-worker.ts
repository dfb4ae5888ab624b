import { type JsMsg, jetstream } from '@nats-io/jetstream';
import { uuidv7 } from 'uuidv7';
import { DomainError, isDomainError } from '../domain/shared/errors';
import { type IngressMessage, type RejectionRecord, decodeJson, encodeJson } from '../infra/nats/ingress';
import { subjects } from '../infra/nats/names';
import type { DeviceRecord, Registry } from '../infra/nats/registry';
import { countDecision } from '../infra/metrics';
import type { Policy } from '../domain/policy/policy';
import type { RegistryView } from '../domain/registry/decide';
import { type RegistryKey, coalescingScope, registryId } from '../domain/registry/events';
import type { LineageState } from '../domain/lineage/state';
import type { LineageCommandHandler, Outcome } from './handler';
import { IngressPartitions, type IngressPartitionsOptions } from './ingress-partitions';
import { type BatchMessage, batchDecisionId, groupBatches, intakeCommand, isBatch } from './intake';
import { applyApproval } from './registry-follower';
import type { RegistryCommandHandler } from './registry-handler';
import { type RegistryGate, UploadIngest } from './uploads';
import { recordSchemaObserve } from './schema-observe';
import type { ObjectStore } from '@nats-io/obj';

export type IngressWorkerOptions = Omit<IngressPartitionsOptions, 'handle'> & {
  handler: LineageCommandHandler;
  registry: Registry;
  /** Registry entries (coalescing); without it every lineage is governed on its own. */
  registries?: RegistryCommandHandler;
  /** The fleet a new device starts in, by its topic slug (SLUICE_TOPIC_FLEETS). */
  fleetOf?: (slug: string) => string | null;
  /** The upload object store; without it url_request and finalize are refused. */
  uploads?: ObjectStore;
};

/**
 * Handles what the ingress partitions deliver (worker/ingress-partitions.ts: which partitions
 * this process drains): resolve (device, table) → lineage, decide, append. A message is acked
 * only after its decision is durable in the event store; on a transient failure it is nak'ed and
 * comes back.
 */
export class IngressWorker {
  private readonly uploads: UploadIngest;
  private readonly leased: IngressPartitions;

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
    this.leased = new IngressPartitions({ ...opts, handle: (ms) => this.processMany(ms) });
  }

  /** Partitions this process drains now. */
  get partitions(): number[] {
    return this.leased.owned;
  }

  async start(): Promise<void> {
    await this.leased.start();
  }

  async stop(): Promise<void> {
    await this.leased.stop();
    await this.uploads.stop();
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

  private async process(m: JsMsg, msg: IngressMessage): Promise<void> {
    if (msg.kind === 'request') {
      // Every device request is handled in one place (worker/uploads.ts): a verify report in
      // order, a finalize beside the loop.
      await this.uploads.handle(msg, m);
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
    if (state.status !== 'registered' || state.awaiting[key.schema_hash] !== view.registry_id) return;
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
