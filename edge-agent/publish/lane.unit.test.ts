import pino from 'pino';
import type { Receipt } from '../../domain/protocol/contracts';
import { Lane, type LaneDeps } from './lane';

/** A lane whose confirmation step fails the way a full disk under state.db fails it. */
class DiskFullLane extends Lane {
  readonly kind = 'rows' as const;
  pump(): void {
    this.inflight.push({ batchId: 'b-1', payload: '{}', rows: 1, sentAt: 0, sends: 0, confirmed: false });
    this.send(this.inflight[0]!);
  }
  onReceipt(_r: Receipt): boolean {
    return false;
  }
  pause(): void {}
  resume(): void {}
  pendingRows(): number {
    return 0;
  }
  protected confirmById(): void {
    throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
  }
}

describe('Lane', () => {
  it('reports a failed confirmation after a PUBACK to its deps, not as an unhandled rejection', async () => {
    const failures: { err: unknown; event: string }[] = [];
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => unhandled.push(err);
    process.on('unhandledRejection', onUnhandled);
    try {
      const deps: LaneDeps = {
        sender: { connected: () => true, publish: () => Promise.resolve() },
        topic: 't',
        delivery: 'puback',
        receiptTimeoutMs: 1000,
        window: 4,
        log: pino({ level: 'silent' }),
        now: () => 0,
        counters: {
          publishedBatches: 0,
          publishedRows: 0,
          resentBatches: 0,
          confirmedBatches: 0,
          confirmedRows: 0,
        },
        wake: () => undefined,
        failed: (err, event) => failures.push({ err, event }),
      };
      new DiskFullLane('t', deps).pump();
      await new Promise((r) => setTimeout(r, 20));
      expect(failures.map((f) => [f.event, (f.err as { code?: string }).code])).toEqual([
        ['confirm_failed', 'SQLITE_FULL'],
      ]);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
