import type { NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, type JsMsg } from '@nats-io/jetstream';
import type { KeyObject } from 'node:crypto';
import { CONTROL_TOPIC, type Control } from '../../domain/protocol/contracts';
import type { LineageEvent, StoredEvent } from '../../domain/lineage/events';
import { signControl } from '../../edge-agent/control/signature';
import { decodeCommit } from '../../infra/nats/event-store';
import { DurableConsumer } from '../../infra/nats/durable-consumer';
import { STREAMS } from '../../infra/nats/names';
import type { ControlRoute, Registry } from '../../infra/nats/registry';
import type { Logger } from '../../infra/log';
import type { CommandService } from '../../worker/commands';
import type { UploadClaims } from '../../infra/uploads/token';

export const DISPATCHER_CONSUMER = 'sluice-dispatcher';

export type DispatcherOptions = {
  nc: NatsConnection;
  registry: Registry;
  commands: CommandService;
  /** Publishes at QoS 1 to the device (the bridge's MQTT connection). */
  publish: (topic: string, body: unknown) => Promise<void>;
  /** Where a lineage's device listens: `{slug}/{device}`, from the lineage's registration. */
  deviceRootOf: (lineageId: string) => Promise<string | undefined>;
  signingKey?: KeyObject;
  /** The presigned URL of an upload (absent: url_grant controls cannot be sent). */
  uploadUrl?: (claims: UploadClaims) => string;
  log: Logger;
  firstRetryMs?: number;
  maxRetryMs?: number;
  scanIntervalMs?: number;
  now?: () => number;
};

/**
 * Delivers controls to devices. It follows the lineage events: a `ControlIssued` is signed,
 * recorded as pending (KV `sluice_controls`, which also routes the device's ACK back to the
 * lineage) and published at QoS 1; it is re-delivered with exponential backoff until a
 * `ControlAcknowledged` arrives. The event is acked only after the pending record is durable.
 */
export class ControlDispatcher {
  private readonly consumer: DurableConsumer;
  private timer: NodeJS.Timeout | undefined;
  private scanning = false;

  constructor(private readonly opts: DispatcherOptions) {
    this.consumer = new DurableConsumer({
      nc: opts.nc,
      stream: STREAMS.lineage,
      config: {
        durable_name: DISPATCHER_CONSUMER,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: 30_000_000_000,
        max_ack_pending: 256,
      },
      handle: (m) => this.handle(m),
      log: opts.log,
      what: 'dispatcher',
    });
  }

  private get now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  async start(): Promise<void> {
    await this.consumer.start();
    this.timer = setInterval(() => void this.redeliverDue(), this.opts.scanIntervalMs ?? 1_000);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.consumer.stop();
  }

  private async handle(m: JsMsg): Promise<void> {
    try {
      const commit = decodeCommit(m.data);
      for (const e of commit.events) await this.onEvent(commit.lineage_id, e, commit.events);
      m.ack();
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message, seq: m.seq }, 'control dispatch failed; will retry');
      m.nak(1_000);
    }
  }

  private async onEvent(
    lineageId: string,
    e: StoredEvent<LineageEvent>,
    decision: readonly StoredEvent<LineageEvent>[] = [],
  ): Promise<void> {
    if (e.type === 'ControlAcknowledged') {
      await this.opts.registry.deleteControl(e.data.control_id);
      return;
    }
    if (e.type !== 'ControlIssued') return;
    if (await this.opts.registry.getControl(e.data.control_id)) return; // already pending (redelivered event)
    const root = await this.opts.deviceRootOf(lineageId);
    if (!root) {
      this.opts.log.error(
        { lineage: lineageId, control: e.data.control_id },
        'no device topic known for this lineage; control not sent',
      );
      return;
    }
    const control: Control = {
      control_id: e.data.control_id,
      control_kind: e.data.control_kind,
      source_table: e.data.source_table,
      server_watermark: e.data.server_watermark,
      reason: e.data.reason,
      issued_at: e.data.issued_at,
      ...(e.data.rows ? { rows: e.data.rows.map((r) => ({ ...r })) } : {}),
      // verify and resync: what to digest or send again travels inside the signature.
      ...(e.data.verify_id !== undefined ? { verify_id: e.data.verify_id } : {}),
      ...(e.data.columns !== undefined ? { columns: [...e.data.columns] } : {}),
      ...(e.data.resync_id !== undefined ? { resync_id: e.data.resync_id } : {}),
      ...(e.data.buckets !== undefined
        ? { buckets: e.data.buckets === null ? null : [...e.data.buckets] }
        : {}),
    };
    if (control.control_kind === 'url_grant') {
      const grant = this.uploadGrant(lineageId, root, e.data.control_id, e.data.source_table, decision);
      if (!grant) return;
      Object.assign(control, grant);
    }
    const route: ControlRoute = {
      lineage_id: lineageId,
      topic: `${root}/${CONTROL_TOPIC}`,
      control,
      attempts: 0,
      next_attempt_at: 0,
    };
    // Durable first: the route is what turns the device's ACK into an event on this lineage.
    await this.opts.registry.putControl(route);
    await this.deliver(route);
  }

  /** The presigned URL fields of a url_grant, from the UploadGranted of the same decision. */
  private uploadGrant(
    lineageId: string,
    root: string,
    controlId: string,
    table: string,
    decision: readonly StoredEvent<LineageEvent>[],
  ): Pick<Control, 'presigned_url' | 'presigned_url_expires_at' | 'upload_id'> | undefined {
    const g = decision.find(
      (x): x is Extract<StoredEvent<LineageEvent>, { type: 'UploadGranted' }> =>
        x.type === 'UploadGranted' && x.data.control_id === controlId,
    );
    if (!g || !this.opts.uploadUrl) {
      this.opts.log.error(
        { lineage: lineageId, control: controlId },
        g
          ? 'no upload URL secret configured (SLUICE_UPLOAD_SECRET or SLUICE_CONTROL_SIGNING_KEY): url_grant not sent; the device falls back to batches'
          : 'url_grant without its UploadGranted; not sent',
      );
      return undefined;
    }
    const d = g.data;
    return {
      upload_id: d.upload_id,
      presigned_url: this.opts.uploadUrl({
        v: 1,
        device_key: root,
        lineage_id: lineageId,
        source_table: table,
        upload_id: d.upload_id,
        journal_epoch: d.journal_epoch,
        first_commit_seq: d.first_commit_seq,
        last_commit_seq: d.last_commit_seq,
        row_count: d.row_count,
        expires_at: d.expires_at,
      }),
      presigned_url_expires_at: d.expires_at,
    };
  }

  private async deliver(route: ControlRoute): Promise<void> {
    // The delivery is recorded before the publish: a device may ACK before a record made after
    // it, and the lineage takes no delivery of an acknowledged control.
    const r = await this.opts.commands.reply('control.delivered', {
      lineage_id: route.lineage_id,
      control_id: route.control.control_id,
    });
    if (r.ok && r.events.length === 0) {
      // No event: the lineage already holds the ACK. Stop delivering.
      await this.opts.registry.deleteControl(route.control.control_id);
      return;
    }
    if (!r.ok)
      this.opts.log.warn(
        { error: r.error, control: route.control.control_id },
        'control delivery not recorded',
      );
    // The device's root goes inside the signature, so a control cannot be replayed to another device.
    const addressed = { ...route.control, root_topic: route.topic.slice(0, -`/${CONTROL_TOPIC}`.length) };
    const body = this.opts.signingKey ? signControl(addressed, this.opts.signingKey) : addressed;
    await this.opts.publish(route.topic, body);
    const attempts = route.attempts + 1;
    const first = this.opts.firstRetryMs ?? 5_000;
    const delay = Math.min(first * 2 ** (attempts - 1), this.opts.maxRetryMs ?? 300_000);
    await this.opts.registry.putControl({ ...route, attempts, next_attempt_at: this.now + delay });
    this.opts.log.info(
      {
        lineage: route.lineage_id,
        control: route.control.control_id,
        kind: route.control.control_kind,
        attempt: attempts,
        topic: route.topic,
      },
      'control published',
    );
  }

  /** Re-deliver every pending control whose backoff has elapsed. */
  async redeliverDue(): Promise<void> {
    if (this.scanning || !this.consumer.isRunning) return;
    this.scanning = true;
    try {
      for (const route of await this.opts.registry.pendingControls()) {
        if (route.next_attempt_at > this.now || route.attempts === 0) continue;
        const exp = route.control.presigned_url_expires_at;
        if (exp !== undefined && Date.parse(exp) <= this.now) {
          // An expired grant is of no use to the device: it asks again and gets a new one.
          await this.opts.registry.deleteControl(route.control.control_id);
          continue;
        }
        await this.deliver(route);
      }
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'control re-delivery scan failed');
    } finally {
      this.scanning = false;
    }
  }
}
