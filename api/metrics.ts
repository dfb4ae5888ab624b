import { Gauge } from 'prom-client';
import type { ReadStore } from '../projections';
import type { Metrics } from '../infra/metrics';

const STATUSES = ['active', 'paused', 'deleted'] as const;
const PAUSE_REASONS = [
  'schema_review',
  'volume_backpressure',
  'circuit_breaker',
  'deferred_columns',
  'data_points',
] as const;

/**
 * Gauges read from the read store when Prometheus scrapes: what is waiting and why, across every
 * process (the counters of `infra/metrics` only count what this process did). A failed query
 * keeps the previous values rather than failing the whole scrape.
 */
export function registerReadStoreGauges(metrics: Metrics, store: ReadStore): void {
  const registry = metrics.registry;
  if (registry.getSingleMetric('sluice_staged_rows')) return;
  const db = store.db;
  let refreshing: Promise<void> = Promise.resolve();
  let lastRefresh = 0;

  // prom-client calls every gauge's collect(); they share one round of queries per scrape.
  const collect = (): Promise<void> => {
    if (Date.now() - lastRefresh >= 250) {
      lastRefresh = Date.now();
      refreshing = refresh().catch(() => undefined);
    }
    return refreshing;
  };
  const gauge = (name: string, help: string, labelNames: string[] = []) =>
    new Gauge({ name, help, labelNames, registers: [registry], collect });
  const staged = gauge('sluice_staged_rows', 'Rows waiting in staging (all lineages)');
  const replaying = gauge(
    'sluice_replaying_rows',
    'Staged rows released for replay and not yet confirmed materialized',
  );
  const lineages = gauge('sluice_lineages', 'Lineages by status', ['status']);
  const paused = gauge('sluice_paused_lineages', 'Paused lineages by pause reason', ['reason']);

  async function refresh(): Promise<void> {
    const [byStatus, reasons] = await Promise.all([
      db
        .selectFrom('edge_table_lineages')
        .select((eb) => [
          'status',
          eb.fn.countAll<number>().as('n'),
          eb.fn.sum<number>('staged_rows').as('staged'),
          eb.fn.sum<number>('replaying_rows').as('replaying'),
        ])
        .groupBy('status')
        .execute(),
      db
        .selectFrom('edge_table_lineages')
        .select((eb) => ['pause_reasons', eb.fn.countAll<number>().as('n')])
        .where('status', '=', 'paused')
        .groupBy('pause_reasons')
        .execute(),
    ]);
    for (const status of STATUSES) lineages.set({ status }, 0);
    let stagedRows = 0;
    let replayingRows = 0;
    for (const r of byStatus) {
      lineages.set({ status: r.status }, Number(r.n));
      if (r.status === 'deleted') continue;
      stagedRows += Number(r.staged ?? 0);
      replayingRows += Number(r.replaying ?? 0);
    }
    staged.set(stagedRows);
    replaying.set(replayingRows);
    const byReason = new Map<string, number>(PAUSE_REASONS.map((r) => [r, 0]));
    for (const r of reasons) {
      for (const reason of JSON.parse(r.pause_reasons) as string[])
        byReason.set(reason, (byReason.get(reason) ?? 0) + Number(r.n));
    }
    for (const [reason, n] of byReason) paused.set({ reason }, n);
  }
}
