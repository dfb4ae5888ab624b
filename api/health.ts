import type { ProjectionStatus, ReadStore } from '../projections';
import type { Metrics } from '../infra/metrics';

export type Check = Readonly<{ ok: boolean; detail?: string } & Record<string, unknown>>;
export type ReadinessCheck = () => Promise<Record<string, Check>>;

/** Where projection lag comes from: the projector running here, or the stored checkpoints. */
export type ProjectionLagSource = () => Promise<readonly ProjectionStatus[]>;

/** Default `/readyz` threshold: more events than this behind the stream head is not ready. */
export const DEFAULT_MAX_PROJECTION_LAG = 10_000;

/** Publish every projection's lag on the `sluice_projection_lag` gauge. */
export function recordProjectionLag(metrics: Metrics, statuses: readonly ProjectionStatus[]): void {
  for (const s of statuses) metrics.projectionLag.set({ projection: s.name }, s.lag);
}

/**
 * `/readyz`: NATS connected, read store answering, and no projection further behind its stream
 * than `maxLag` events (an API whose reads are that stale should not take traffic).
 */
export function readinessCheck(o: {
  natsConnected: () => boolean;
  store: ReadStore;
  projections?: ProjectionLagSource;
  maxLag?: number;
  metrics?: Metrics;
}): ReadinessCheck {
  const maxLag = o.maxLag ?? DEFAULT_MAX_PROJECTION_LAG;
  return async () => {
    const checks: Record<string, Check> = {};
    checks.nats = o.natsConnected()
      ? { ok: true }
      : { ok: false, detail: 'not connected to NATS; reconnecting' };
    try {
      await o.store.db.selectFrom('projection_checkpoints').select('name').limit(1).execute();
      checks.read_store = { ok: true };
    } catch (err) {
      checks.read_store = { ok: false, detail: (err as Error).message };
    }
    if (o.projections) {
      try {
        const statuses = await o.projections();
        if (o.metrics) recordProjectionLag(o.metrics, statuses);
        const lag = Object.fromEntries(statuses.map((s) => [s.name, s.lag]));
        const worst = statuses.reduce<ProjectionStatus | undefined>(
          (w, s) => (w === undefined || s.lag > w.lag ? s : w),
          undefined,
        );
        const behind = worst !== undefined && worst.lag > maxLag;
        checks.projections = {
          ok: !behind,
          detail: behind
            ? `projection ${worst.name} is ${worst.lag} events behind (limit ${maxLag}); reads are stale until it catches up`
            : `max lag ${worst?.lag ?? 0} events (limit ${maxLag})`,
          max_lag: maxLag,
          lag,
        };
      } catch (err) {
        checks.projections = {
          ok: false,
          detail: `projection status unavailable: ${(err as Error).message}`,
        };
      }
    }
    return checks;
  };
}
