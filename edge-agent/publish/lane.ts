import type { Logger } from 'pino';
import type { Receipt } from '../../domain/protocol/contracts';

/** A batch published (or about to be) and not yet confirmed. */
export type Inflight = {
  batchId: string;
  payload: string;
  rows: number;
  sentAt: number;
  sends: number;
  confirmed: boolean;
};

export type Sender = Readonly<{
  connected: () => boolean;
  publish: (topic: string, payload: string) => Promise<void>;
}>;

export type LaneCounters = {
  publishedBatches: number;
  publishedRows: number;
  resentBatches: number;
  confirmedBatches: number;
  confirmedRows: number;
};

export type LaneDeps = Readonly<{
  sender: Sender;
  topic: string;
  delivery: 'receipt' | 'puback';
  receiptTimeoutMs: number;
  window: number;
  log: Logger;
  now: () => number;
  counters: LaneCounters;
  /** Called when a confirmation frees the window (the agent pumps the lane again). */
  wake: () => void;
  /**
   * Where a step that runs outside the agent's tick (a PUBACK's continuation) reports a failure,
   * such as a full disk under state.db: logged like a failed tick, never thrown into the void.
   */
  failed: StepFailed;
}>;

export type StepFailed = (err: unknown, event: string, what: string) => void;

/**
 * What rows and telemetry lanes share: an ordered window of in-flight batches per table, sent
 * in order, re-sent with the same batch_id until confirmed, confirmed strictly in order.
 */
export abstract class Lane {
  readonly inflight: Inflight[] = [];
  paused = false;
  /** Send what is pending even if below the batch caps (set by `drain`). */
  protected draining = false;

  constructor(
    readonly table: string,
    protected readonly deps: LaneDeps,
  ) {}

  abstract readonly kind: 'rows' | 'telemetry';
  /** Build, record and send batches while the window has room. */
  abstract pump(): void;
  /** A receipt for this table; true if it matched an in-flight batch. */
  abstract onReceipt(r: Receipt): boolean;
  abstract pause(watermark: number | undefined): void;
  abstract resume(watermark: number | undefined): void;
  abstract pendingRows(): number;

  /** A flush tick: send what is pending even if below the batch caps. */
  drain(): void {
    this.draining = true;
  }

  protected windowFull(): boolean {
    return this.inflight.length >= this.deps.window;
  }

  protected send(b: Inflight): void {
    const { sender, log } = this.deps;
    if (!sender.connected()) return; // sent when the link comes back (resendAll)
    b.sentAt = this.deps.now();
    b.sends++;
    if (b.sends === 1) {
      this.deps.counters.publishedBatches++;
      this.deps.counters.publishedRows += b.rows;
    } else this.deps.counters.resentBatches++;
    log.info(
      { event: b.sends === 1 ? 'publish' : 'resend', table: this.table, batch_id: b.batchId, rows: b.rows },
      b.sends === 1 ? 'published batch' : 're-sent unconfirmed batch',
    );
    sender
      .publish(this.deps.topic, b.payload)
      .then(
        () => {
          if (this.deps.delivery === 'puback') this.confirmById(b.batchId);
        },
        (err: Error) => {
          // Kept in the window: the next reconnect or timeout sends it again.
          log.warn({ event: 'publish_failed', table: this.table, batch_id: b.batchId, err: err.message });
        },
      )
      .catch((err: unknown) =>
        this.deps.failed(err, 'confirm_failed', 'recording a confirmation failed; the batch is sent again'),
      );
  }

  protected abstract confirmById(batchId: string): void;

  /** Re-send every unconfirmed batch, oldest first (after a reconnect). */
  resendAll(): void {
    if (this.paused) return;
    for (const b of this.inflight) {
      if (!b.confirmed && (this.deps.delivery === 'receipt' || b.sends === 0)) this.send(b);
    }
  }

  /** Re-send batches whose confirmation is overdue, in order. */
  resendOverdue(): void {
    if (this.paused || !this.deps.sender.connected()) return;
    const now = this.deps.now();
    const overdue = this.inflight.filter(
      (b) => !b.confirmed && (b.sends === 0 || now - b.sentAt >= this.deps.receiptTimeoutMs),
    );
    for (const b of overdue) this.send(b);
  }

  /** Mark a batch confirmed and pop the confirmed prefix of the window. */
  protected popConfirmed(batchId: string): Inflight[] {
    const b = this.inflight.find((x) => x.batchId === batchId);
    if (!b) return [];
    b.confirmed = true;
    const done: Inflight[] = [];
    while (this.inflight[0]?.confirmed) done.push(this.inflight.shift()!);
    return done;
  }
}
