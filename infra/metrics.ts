import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { LineageEvent } from '../domain/lineage/events';

/** The process's Prometheus metrics; every role registers into one registry served at /metrics. */
export function createMetrics() {
  const registry = new Registry();
  return {
    registry,
    uplinks: new Counter({
      name: 'sluice_uplinks_total',
      help: 'Uplink messages accepted into ingress',
      labelNames: ['kind'],
      registers: [registry],
    }),
    rejections: new Counter({
      name: 'sluice_rejections_total',
      help: 'Uplink messages rejected',
      labelNames: ['code'],
      registers: [registry],
    }),
    appendRetries: new Counter({
      name: 'sluice_ingress_append_retries_total',
      help: 'Ingress appends retried while JetStream was unavailable',
      registers: [registry],
    }),
    rows: new Counter({
      name: 'sluice_rows_total',
      help: 'Rows decided by the worker',
      labelNames: ['disposition'],
      registers: [registry],
    }),
    decisions: new Counter({
      name: 'sluice_decisions_total',
      help: 'Lineage decisions appended',
      labelNames: ['command'],
      registers: [registry],
    }),
    conflicts: new Counter({
      name: 'sluice_append_conflicts_total',
      help: 'Optimistic-concurrency conflicts retried',
      registers: [registry],
    }),
    rowsRefused: new Counter({
      name: 'sluice_rows_refused_total',
      help: 'Changes a device could not encode (op refused), recorded and never materialized',
      labelNames: ['code'],
      registers: [registry],
    }),
    verifies: new Counter({
      name: 'sluice_verify_total',
      help: 'Verify runs completed, by outcome (equal, divergent, not_comparable)',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    pauses: new Counter({
      name: 'sluice_lineage_pauses_total',
      help: 'Lineage pauses',
      labelNames: ['reason'],
      registers: [registry],
    }),
    ingressMessages: new Counter({
      name: 'sluice_ingress_messages_total',
      help: 'Ingress messages handled by this worker',
      registers: [registry],
    }),
    projectionMessages: new Counter({
      name: 'sluice_projection_messages_total',
      help: 'Lineage-stream messages a projection applied in this process (a partitioned one: of its partitions)',
      labelNames: ['projection'],
      registers: [registry],
    }),
    projectionConflicts: new Counter({
      name: 'sluice_projection_conflicts_total',
      help: 'Batches a projection re-read because another projector had moved its checkpoint first',
      labelNames: ['projection'],
      registers: [registry],
    }),
    partitionsOwned: new Gauge({
      name: 'sluice_partitions_owned',
      help: 'Partitions of the work this process holds the lease of',
      labelNames: ['group'],
      registers: [registry],
    }),
    projectionLag: new Gauge({
      name: 'sluice_projection_lag',
      help: 'Events behind the stream head',
      labelNames: ['projection'],
      registers: [registry],
    }),
    apiLatency: new Histogram({
      name: 'sluice_api_request_seconds',
      help: 'HTTP API latency',
      labelNames: ['route', 'method', 'status'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
  };
}
export type Metrics = ReturnType<typeof createMetrics>;

/** Rows and pauses of one lineage decision, whichever intake (batch or upload chunk) made it. */
export function countDecision(metrics: Metrics | undefined, events: readonly LineageEvent[]): void {
  if (!metrics) return;
  for (const e of events) {
    if (e.type === 'RowsStaged') metrics.rows.inc({ disposition: 'staged' }, e.data.rows.length);
    if (e.type === 'RowsAccepted') metrics.rows.inc({ disposition: 'accepted' }, e.data.rows.length);
    if (e.type === 'StateWriteConflictDetected')
      metrics.rows.inc({ disposition: 'conflict' }, e.data.conflicts.length);
    if (e.type === 'LineagePaused') metrics.pauses.inc({ reason: e.data.reason });
  }
}

/** Refused changes and verify outcomes of one durable decision, whichever path made it. */
export function countOutcomes(metrics: Metrics | undefined, events: readonly LineageEvent[]): void {
  if (!metrics) return;
  for (const e of events) {
    if (e.type === 'RowsRefused') {
      for (const r of e.data.rows) metrics.rowsRefused.inc({ code: r.refusal?.code ?? 'unknown' });
    }
    if (e.type === 'VerifyCompleted') metrics.verifies.inc({ outcome: e.data.outcome });
  }
}
