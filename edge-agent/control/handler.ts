import type { KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import { type Control, controlSchema, parseJsonPayload } from '../../domain/protocol/contracts';
import type { StateStore } from '../state/state-db';
import { verifyControl } from './signature';

export type ControlActions = Readonly<{
  /** Publish `{format_version:1, control_id}` on sync/ingest/ack; resolves on PUBACK. */
  ack: (controlId: string) => Promise<void>;
  /** Act on the control; returns a short outcome for the log and state.db. */
  apply: (control: Control) => string;
  connected: () => boolean;
}>;

export type ControlCounters = { received: number; rejected: number; applied: number };

/**
 * Downlinks: verify (when signed_control is on), remember, ACK first, then act. A control seen
 * before is ACKed again (the cloud redelivers until it has the ACK) but applied only once. The
 * control is written to state.db before the ACK, so a crash between ACK and action still acts
 * on it at the next start.
 */
export class ControlHandler {
  constructor(
    private readonly state: StateStore,
    private readonly actions: ControlActions,
    private readonly log: Logger,
    private readonly publicKey: KeyObject | undefined,
    private readonly counters: ControlCounters,
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
    const seen = this.state.control(control.control_id);
    if (!seen)
      this.state.recordControl(
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

  private reject(reason: string, message: string): void {
    this.counters.rejected++;
    this.log.warn({ event: 'control_dropped', reason }, message);
  }

  private applyOnce(control: Control): void {
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
    this.state.markControlApplied(control.control_id, outcome);
  }

  private sendAck(id: string): void {
    if (!this.actions.connected()) return; // re-ACKed on reconnect from state.db
    this.actions.ack(id).then(
      () => {
        this.state.markControlAcked(id);
        this.log.info({ event: 'control_acked', control_id: id }, 'control ACKed');
      },
      (err: Error) => this.log.warn({ event: 'ack_failed', control_id: id, err: err.message }),
    );
  }

  /** At start: controls recorded but not applied (crash after the ACK) are applied now. */
  applyPending(): void {
    for (const rec of this.state.unappliedControls()) {
      const c = controlSchema.safeParse(JSON.parse(rec.raw));
      if (c.success) this.applyOnce(c.data);
    }
  }

  /** After (re)connecting: ACK what has not been ACKed yet. */
  reackPending(): void {
    for (const rec of this.state.unackedControls()) this.sendAck(rec.controlId);
  }
}
