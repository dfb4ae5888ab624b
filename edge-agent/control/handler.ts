import type { KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import { type Control, controlSchema, parseJsonPayload } from '../../domain/protocol/contracts';
import type { ControlOrder } from '../state/controls';
import type { StateStore } from '../state/state-store';
import { verifyControl } from './signature';

/** Controls that set a table's pause state: the newest one the cloud issued wins. */
const ORDERED_KINDS: ReadonlySet<string> = new Set(['pause_lineage', 'resume_lineage']);

/** Issue order of two controls: `issued_at`, then the (time-ordered) UUIDv7 `control_id`. */
export function compareIssued(
  a: Readonly<{ issuedAt: string; controlId: string }>,
  b: Readonly<{ issuedAt: string; controlId: string }>,
): number {
  const d = Date.parse(a.issuedAt) - Date.parse(b.issuedAt);
  if (d !== 0) return d;
  const x = a.controlId.toLowerCase();
  const y = b.controlId.toLowerCase();
  return x < y ? -1 : x > y ? 1 : 0;
}

export type ControlActions = Readonly<{
  /** Publish `{format_version:1, control_id}` on sync/ingest/ack; resolves on PUBACK. */
  ack: (controlId: string) => Promise<void>;
  /** Act on the control; returns a short outcome for the log and state.db. */
  apply: (control: Control) => string;
  connected: () => boolean;
}>;

export type ControlCounters = { received: number; rejected: number; applied: number; stale: number };

/**
 * Downlinks: verify (when signed_control is on), remember, ACK first, then act. A control seen
 * before is ACKed again (the cloud redelivers until it has the ACK) but applied only once. The
 * control is written to state.db before the ACK, so a crash between ACK and action still acts
 * on it at the next start.
 *
 * Replay protection (docs/security.md): a control must be addressed to this device
 * (`root_topic`, inside the signature; required when signatures are on). Pause and resume of a
 * table are ordered by `(issued_at, control_id)`: a control older than the newest one already
 * acted on for that table is stale (an old pause re-sent after a resume) and is ACKed, recorded,
 * and not acted on. The seen ids and each table's newest control live in state.db, so neither a
 * restart nor a redelivery makes an old control act again.
 */
export class ControlHandler {
  constructor(
    private readonly state: StateStore,
    private readonly actions: ControlActions,
    private readonly log: Logger,
    private readonly publicKey: KeyObject | undefined,
    private readonly counters: ControlCounters,
    private readonly rootTopic?: string,
  ) {}

  onMessage(payload: Buffer): void {
    this.counters.received++;
    const parsed = parseJsonPayload(payload);
    if (!parsed.ok) return this.reject('unreadable', parsed.rejection.message);
    const raw = parsed.value;
    const shape = controlSchema.safeParse(raw);
    if (!shape.success) {
      const first = shape.error.issues[0];
      return this.reject('invalid', `${first?.path.join('.') || 'control'}: ${first?.message ?? 'invalid'}`);
    }
    const control = shape.data;
    if (this.publicKey && !verifyControl(raw as Record<string, unknown>, this.publicKey)) {
      return this.reject(
        control.signature ? 'bad_signature' : 'unsigned',
        `control ${control.control_id} (${control.control_kind} ${control.source_table}) ` +
          `${control.signature ? 'has a signature that does not verify' : 'is unsigned'} against the configured ` +
          'public key; dropped without ACK or action. If the cloud rotated its key, update ' +
          'security.signed_control.public_key.',
      );
    }
    const target = (raw as Record<string, unknown>).root_topic;
    if (this.rootTopic !== undefined && (target !== undefined || this.publicKey)) {
      if (target !== this.rootTopic) {
        return this.reject(
          'wrong_device',
          `control ${control.control_id} is addressed to ${target === undefined ? 'no device' : JSON.stringify(target)}, ` +
            `not to this device (${this.rootTopic}); dropped without ACK or action. A signed control ` +
            'must name its device in root_topic.',
        );
      }
    }
    if (Number.isNaN(Date.parse(control.issued_at))) {
      return this.reject('invalid', `control ${control.control_id}: issued_at is not a timestamp; dropped`);
    }
    const seen = this.state.controls.get(control.control_id);
    if (!seen)
      this.state.controls.record(
        control.control_id,
        control.control_kind,
        control.source_table,
        JSON.stringify(raw),
      );
    this.sendAck(control.control_id);
    if (seen?.appliedAt) {
      this.log.info(
        { event: 'control_redelivered', control_id: control.control_id, kind: control.control_kind },
        'control seen before: ACKed again, not applied twice',
      );
      return;
    }
    this.applyOnce(control);
  }

  /** The newest control acted on for this control's table, when this one is older (or the same). */
  private newerApplied(control: Control): ControlOrder | undefined {
    if (!ORDERED_KINDS.has(control.control_kind)) return undefined;
    const last = this.state.controls.order(control.source_table);
    if (!last) return undefined;
    const cmp = compareIssued({ issuedAt: control.issued_at, controlId: control.control_id }, last);
    return cmp <= 0 && last.controlId !== control.control_id ? last : undefined;
  }

  private reject(reason: string, message: string): void {
    this.counters.rejected++;
    this.log.warn({ event: 'control_dropped', reason }, message);
  }

  private applyOnce(control: Control): void {
    const newer = this.newerApplied(control);
    if (newer) {
      this.counters.stale++;
      this.log.warn(
        {
          event: 'control_stale',
          control_id: control.control_id,
          kind: control.control_kind,
          table: control.source_table,
          issued_at: control.issued_at,
          newer_control_id: newer.controlId,
        },
        `${control.control_kind} ${control.control_id} for ${control.source_table} was issued before ` +
          `${newer.controlId}, which this device already obeyed: ACKed and not acted on (a late or replayed control)`,
      );
      this.state.controls.markApplied(control.control_id, `stale: ${newer.controlId} is newer`);
      return;
    }
    let outcome: string;
    try {
      outcome = this.actions.apply(control);
    } catch (err) {
      outcome = `failed: ${(err as Error).message}`;
      this.log.error(
        {
          event: 'control_failed',
          control_id: control.control_id,
          kind: control.control_kind,
          err: (err as Error).message,
        },
        `could not apply ${control.control_kind} for ${control.source_table}; nothing was changed`,
      );
    }
    this.counters.applied++;
    this.state.controls.markApplied(
      control.control_id,
      outcome,
      ORDERED_KINDS.has(control.control_kind)
        ? { table: control.source_table, issuedAt: control.issued_at, controlId: control.control_id }
        : undefined,
    );
  }

  private sendAck(id: string): void {
    if (!this.actions.connected()) return; // re-ACKed on reconnect from state.db
    this.actions.ack(id).then(
      () => {
        this.state.controls.markAcked(id);
        this.log.info({ event: 'control_acked', control_id: id }, 'control ACKed');
      },
      (err: Error) => this.log.warn({ event: 'ack_failed', control_id: id, err: err.message }),
    );
  }

  /** At start: controls recorded but not applied (crash after the ACK) are applied now. */
  applyPending(): void {
    for (const rec of this.state.controls.unapplied()) {
      const c = controlSchema.safeParse(JSON.parse(rec.raw));
      if (c.success) this.applyOnce(c.data);
    }
  }

  /** After (re)connecting: ACK what has not been ACKed yet. */
  reackPending(): void {
    for (const rec of this.state.controls.unacked()) this.sendAck(rec.controlId);
  }
}
