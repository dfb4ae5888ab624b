import { lastVerify } from '../domain/lineage/state';
import type { Policy } from '../domain/policy/policy';
import type { Logger } from '../infra/log';
import type { CommandService } from './commands';

export type VerifySchedulerOptions = Readonly<{
  commands: CommandService;
  /** Every current lineage id (the lineage index). */
  lineageIds: () => Promise<readonly string[]>;
  policy: (projectId: string) => Promise<Policy>;
  log: Logger;
  /** How often the lineages are scanned (default one minute). */
  scanIntervalMs?: number;
  now?: () => Date;
}>;

/**
 * The project policy `verify_interval_minutes` (docs/verify.md): a periodic scan over the lineage
 * index asks for a verify of every active row lineage whose last verify is older than the
 * interval. Every worker may run one: the decider refuses a run that is not due (so concurrent
 * scans add nothing), and the idempotency key names the interval slot.
 */
export class VerifyScheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(private readonly opts: VerifySchedulerOptions) {}

  start(): void {
    this.timer = setInterval(() => void this.scanOnce(), this.opts.scanIntervalMs ?? 60_000);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  /** One pass; returns how many verifies were requested. */
  async scanOnce(): Promise<number> {
    if (this.running) return 0;
    let requested = 0;
    const run = (async () => {
      const now = this.opts.now?.() ?? new Date();
      for (const id of await this.opts.lineageIds()) {
        try {
          if (await this.consider(id, now)) requested++;
        } catch (err) {
          this.opts.log.warn({ lineage: id, err: (err as Error).message }, 'scheduled verify not requested');
        }
      }
    })();
    this.running = run;
    try {
      await run;
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'verify schedule scan failed');
    } finally {
      this.running = undefined;
    }
    return requested;
  }

  private async consider(lineageId: string, now: Date): Promise<boolean> {
    const state = await this.opts.commands.lineageState(lineageId);
    if (state.status !== 'registered' || state.kind !== 'rows' || state.approved_hash === null) return false;
    const interval = (await this.opts.policy(state.project_id)).verify_interval_minutes;
    if (interval <= 0) return false;
    const last = lastVerify(state);
    if (last && now.getTime() - Date.parse(last.requested_at) < interval * 60_000) return false;
    const slot = Math.floor(now.getTime() / (interval * 60_000));
    const r = await this.opts.commands.reply('lineage.verify', {
      lineage_id: lineageId,
      trigger: 'schedule',
      interval_minutes: interval,
      idempotency_key: `verify-schedule:${lineageId}:${interval}:${slot}`,
      actor: 'verify-schedule',
    });
    if (!r.ok) {
      this.opts.log.warn({ lineage: lineageId, error: r.error }, 'scheduled verify refused');
      return false;
    }
    return r.events.some((e) => e.type === 'VerifyRequested');
  }
}
