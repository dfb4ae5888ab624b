import type { NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from '@nats-io/jetstream';
import type { KeyObject } from 'node:crypto';
import { CONTROL_TOPIC, type Control } from '../../domain/protocol/contracts';
import type { LineageEvent, StoredEvent } from '../../domain/lineage/events';
import { signControl } from '../../infra/security/control-signature';
import { decodeCommit } from '../../infra/nats/event-store';
import { DurableConsumer } from '../../infra/nats/durable-consumer';
import { STREAMS, subjects } from '../../infra/nats/names';
import type { ControlRoute, Registry } from '../../infra/nats/registry';
import type { Logger } from '../../infra/log';
import type { CommandService } from '../../worker/commands';
import type { UploadClaims } from '../../infra/uploads/token';

export const DISPATCHER_CONSUMER = 'sluice-dispatcher';
/** The consumer of the control retries, shared by every bridge: each retry is handled by one. */
export const RETRY_CONSUMER = 'sluice-control-retries';

export type DispatcherOptions = {
  nc: NatsConnection;
  registry: Registry;
  commands: CommandService;
  /** Publishes at QoS 1 to the device (the bridge's MQTT connection). */
  publish: (topic: string, body: unknown) => Promise<void>;
  /** The device key of a lineage's device (`{slug}/{device}`, where it listens), from its registration. */
  deviceKeyOf: (lineageId: string) => Promise<string | undefined>;
  signingKey?: KeyObject;
  /** The presigned URL of an upload (absent: url_grant controls cannot be sent). */
  uploadUrl?: (claims: UploadClaims) => string;
  log: Logger;
  firstRetryMs?: number;
  maxRetryMs?: number;
  now?: () => number;
};

/**
 * Delivers controls to devices. It follows the lineage events: a `ControlIssued` is signed,
 * recorded as pending (KV `sluice_controls`, which also routes the device's ACK back to the
 * lineage) and published at QoS 1; it is re-delivered with exponential backoff until a
 * `ControlAcknowledged` arrives. The event is acked only after the pending record is durable.
 *
 * Re-delivery: each pending control has one message on the work queue `SLUICE_CONTROL_RETRIES`.
 * Its consumer, shared by every bridge, hands it to one bridge, which naks it with a delay until
 * the control is due, sends it again and naks it until the next attempt; once the control is
 * acknowledged the message is acked and gone. No bridge scans the pending controls.
 */
export class ControlDispatcher {
  private readonly consumer: DurableConsumer;
  private readonly retries: DurableConsumer;
  private readonly js: JetStreamClient;

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
    this.retries = new DurableConsumer({
      nc: opts.nc,
      stream: STREAMS.controlRetries,
      config: {
        durable_name: RETRY_CONSUMER,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: 30_000_000_000,
        // A message waiting out its delay counts as pending: allow one per pending control.
        max_ack_pending: 100_000,
      },
      handle: (m) => this.retry(m),
      log: opts.log,
      what: 'control retries',
    });
    this.js = jetstream(opts.nc);
  }

  private get now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  async start(): Promise<void> {
    await this.enqueueUnscheduled();
    await this.consumer.start();
    await this.retries.start();
  }

  async stop(): Promise<void> {
    await this.retries.stop();
    await this.consumer.stop();
  }

  /** Schedule the control's re-delivery; the msg-id makes a repeat within the window a no-op. */
  private async schedule(controlId: string): Promise<void> {
    await this.js.publish(subjects.controlRetry(controlId), new Uint8Array(), {
      msgID: `retry:${controlId}`,
    });
  }

  /**
   * Controls left pending by a version that re-delivered by scanning have no retry message yet:
   * schedule them, once, when the bridge starts (the msg-id dedupes other bridges doing the same).
   */
  private async enqueueUnscheduled(): Promise<void> {
    const jsm = await jetstreamManager(this.opts.nc);
    const consumer = await jsm.consumers.info(STREAMS.controlRetries, RETRY_CONSUMER).catch(() => undefined);
    if (consumer) return; // retries have been scheduled through the stream since it was made
    for (const route of await this.opts.registry.pendingControls())
      await this.schedule(route.control.control_id);
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
    if (await this.opts.registry.getControl(e.data.control_id)) {
      // Already pending (a redelivered event): make sure its re-delivery is scheduled.
      await this.schedule(e.data.control_id);
      return;
    }
    const deviceKey = await this.opts.deviceKeyOf(lineageId);
    if (!deviceKey) {
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
      const grant = this.uploadGrant(lineageId, deviceKey, e.data.control_id, e.data.source_table, decision);
      if (!grant) return;
      Object.assign(control, grant);
    }
    const route: ControlRoute = {
      lineage_id: lineageId,
      topic: `${deviceKey}/${CONTROL_TOPIC}`,
      control,
      attempts: 0,
      next_attempt_at: 0,
    };
    // Durable first: the route is what turns the device's ACK into an event on this lineage.
    await this.opts.registry.putControl(route);
    await this.schedule(route.control.control_id);
    await this.deliver(route);
  }

  /** The presigned URL fields of a url_grant, from the UploadGranted of the same decision. */
  private uploadGrant(
    lineageId: string,
    deviceKey: string,
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
        device_key: deviceKey,
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

  /** Send the control; the route as recorded after it, or undefined when the lineage holds its ACK. */
  private async deliver(route: ControlRoute): Promise<ControlRoute | undefined> {
    // The delivery is recorded before the publish: a device may ACK before a record made after
    // it, and the lineage takes no delivery of an acknowledged control.
    const r = await this.opts.commands.reply('control.delivered', {
      lineage_id: route.lineage_id,
      control_id: route.control.control_id,
    });
    if (r.ok && r.events.length === 0) {
      // No event: the lineage already holds the ACK. Stop delivering.
      await this.opts.registry.deleteControl(route.control.control_id);
      return undefined;
    }
    if (!r.ok)
      this.opts.log.warn(
        { error: r.error, control: route.control.control_id },
        'control delivery not recorded',
      );
    // The device key goes inside the signature (as root_topic), so a control cannot be replayed to
    // another device.
    const addressed = { ...route.control, root_topic: route.topic.slice(0, -`/${CONTROL_TOPIC}`.length) };
    const body = this.opts.signingKey ? signControl(addressed, this.opts.signingKey) : addressed;
    await this.opts.publish(route.topic, body);
    const attempts = route.attempts + 1;
    const delay = Math.min(this.firstRetryMs * 2 ** (attempts - 1), this.opts.maxRetryMs ?? 300_000);
    const next = { ...route, attempts, next_attempt_at: this.now + delay };
    await this.opts.registry.putControl(next);
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
    return next;
  }

  /**
   * One control's retry message: gone (acknowledged) → ack it; not yet due → nak until it is;
   * due → send it again and nak until the next attempt. An expired upload grant is dropped: the
   * device asks again and gets a new one.
   */
  private async retry(m: JsMsg): Promise<void> {
    const controlId = m.subject.slice(m.subject.lastIndexOf('.') + 1);
    try {
      let route = await this.opts.registry.getControl(controlId);
      if (!route) {
        m.ack();
        return;
      }
      const exp = route.control.presigned_url_expires_at;
      if (exp !== undefined && Date.parse(exp) <= this.now) {
        await this.opts.registry.deleteControl(controlId);
        m.ack();
        return;
      }
      // attempts 0: the first delivery is the event handler's; wait for it.
      if (route.attempts > 0 && route.next_attempt_at <= this.now) {
        route = await this.deliver(route);
        if (!route) {
          m.ack();
          return;
        }
      }
      const wait = route.attempts === 0 ? this.firstRetryMs : route.next_attempt_at - this.now;
      m.nak(Math.max(10, wait));
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message, control: controlId }, 'control re-delivery failed');
      m.nak(1_000);
    }
  }

  private get firstRetryMs(): number {
    return this.opts.firstRetryMs ?? 5_000;
  }
}
