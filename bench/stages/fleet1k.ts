/**
 * A thousand devices against the real cloud (the roles of `startCloud`, nats-server's MQTT
 * listener, PostgreSQL read store): simulated devices in one process (`bench/sim-fleet.ts`) speak
 * the agent's protocol, one MQTT connection and one lineage each, transactions of 1–5 rows.
 *
 * - Every lineage is approved through the HTTP API (claim, approve), as in the other stages.
 * - Sustained rows/s: offered load in steps (×1.5 from `fleet1kStartRate`, one refining step
 *   between the last step kept up and the first that was not). A step is kept up when the p99 of
 *   commit → visible of the markers seen in its last two thirds is ≤ KEEP_UP_MS and the rows not
 *   yet receipted at its end are fewer than 2 s of offered load.
 * - Freshness at 50 % of that rate: every marker committed in the window and seen in the mirror.
 *
 * Visibility is read from the read store itself (PostgreSQL, each device's mirror table, the probe
 * row id 0 whose `n` is its commit time), 100 tables per prepared statement, round robin, a round
 * at most every 250 ms (which the latencies include): the API
 * would spend more CPU than the pipeline polling a thousand lineages. Commit and visible times are
 * both wall-clock ms on this machine.
 */
import pg from 'pg';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { STREAMS } from '../../infra/nats/names';
import { ingressBacklog } from '../../worker/ingress-partitions';
import { startProcess } from '../../tests/support/proc';
import { onCleanup } from '../lib/cleanup';
import type { Ctx, StageResult } from '../lib/context';
import { sleep } from '../lib/measure';
import { percentiles, spread } from '../lib/stats';
import { api, type Cloud, LINEAGE_PROJECTIONS, nodeCommand, waitReady } from './full';

/** A step keeps up when the p99 of commit → visible stays under this. */
export const KEEP_UP_MS = 3_000;
const POLL_CHUNK = 100;
/** A full round of the read-store poller takes at least this long (it adds up to it to a latency). */
const POLL_CYCLE_MS = 250;

type SimStats = {
  t: number;
  rate: number;
  committed_rows: number;
  committed_tx: number;
  published_batches: number;
  published_rows: number;
  resent_batches: number;
  receipted_batches: number;
  receipted_rows: number;
  pending_rows: number;
  inflight_batches: number;
};

type Step = {
  offered: number;
  committed_rows_per_s: number;
  batches_per_s: number;
  rows_per_batch: number;
  p50_ms: number;
  p99_ms: number;
  unreceipted_rows: number;
  queues: Queues;
  kept_up: boolean;
};

/**
 * Where messages wait at one moment: uplinks the broker holds for the bridge (QoS 1 messages in
 * nats-server's `$MQTT_msgs` not yet acked by the bridge's consumer, the largest consumer there),
 * uplinks in the ingress stream not yet decided (worker), lineage messages the slowest projection
 * has not applied (projector).
 */
type Queues = { mqtt_to_bridge: number; ingress: number; projection_lag: number };

export async function fleet1k(ctx: Ctx, cloud: Cloud, size: number): Promise<StageResult[]> {
  const n = ctx.sizes.fleet1kDevices;
  const prefix = `sim${Date.now() % 100000}`;
  const label = `${n.toLocaleString('en-US')} devices`;
  const t0 = Date.now();
  const [cmd, args] = nodeCommand(ctx, 'sim-fleet', 'bench/sim-fleet.ts', [
    '--url',
    ctx.nats.mqttUrl,
    '--devices',
    String(n),
    '--prefix',
    prefix,
    '--row-bytes',
    String(size),
    '--keys',
    String(ctx.sizes.keys),
  ]);
  const sim = startProcess(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const forget = onCleanup(() => sim.stop());
  const send = (line: string) => sim.child.stdin?.write(`${line}\n`);
  const lastStats = (): SimStats | undefined => {
    const lines = sim.output().trimEnd().split('\n');
    for (let i = lines.length - 1; i >= 0; i--)
      if (lines[i]!.startsWith('{"stats"')) return (JSON.parse(lines[i]!) as { stats: SimStats }).stats;
    return undefined;
  };
  const tracked = { name: `simulated devices (${n} in one process)`, pids: () => [sim.child.pid!] };
  const db = new pg.Client({ connectionString: cloud.readStoreUrl });
  await db.connect();
  const nc = await connect({ servers: ctx.nats.url });
  const jsm = await jetstreamManager(nc);
  let polling = false;
  let poller: Promise<void> | undefined;
  try {
    await waitReady([{ name: 'sim-fleet', proc: sim, ready: 'sim ready' }], 180_000);
    ctx.log(`  ${label}: connected, first batches receipted (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    const tables = await approve(db, cloud, prefix, n);
    ctx.log(`  ${label}: approved, mirror tables up (${((Date.now() - t0) / 1000).toFixed(1)} s)`);

    // The poller: per device the last marker seen; each new one gives commit → visible.
    const seen = new Float64Array(n);
    const samples: { at: number; committed: number; ms: number }[] = [];
    let cycles = 0;
    let cycleStart = Date.now();
    let cycleMs = 0;
    let queryMs = 0;
    const chunks: { name: string; text: string; first: number }[] = [];
    for (let c = 0; c < n; c += POLL_CHUNK)
      chunks.push({
        name: `fleet_poll_${prefix}_${c}`,
        first: c,
        text: tables
          .slice(c, c + POLL_CHUNK)
          .map((t, j) => `SELECT ${c + j} AS i, n FROM "${t}" WHERE id = 0`)
          .join(' UNION ALL '),
      });
    const pollOnce = async () => {
      for (const ch of chunks) {
        const q0 = performance.now();
        const r = await db.query<{ i: number; n: string }>({ name: ch.name, text: ch.text });
        queryMs += performance.now() - q0;
        const now = Date.now();
        for (const row of r.rows) {
          const m = Number(row.n);
          if (m > seen[row.i]!) {
            if (seen[row.i]! > 0) samples.push({ at: now, committed: m, ms: now - m });
            seen[row.i] = m;
          }
        }
        await sleep(2);
      }
      // Paced: the poller's statements are PostgreSQL work beside the projector's.
      const spent = Date.now() - cycleStart;
      if (spent < POLL_CYCLE_MS) await sleep(POLL_CYCLE_MS - spent);
      cycles++;
      const t = Date.now();
      cycleMs += t - cycleStart;
      cycleStart = t;
    };
    await pollOnce();
    const missing = [...seen].filter((m) => m <= 0).length;
    if (missing > 0) throw new Error(`${missing} device(s) have no probe row in the mirror after approval`);
    polling = true;
    poller = (async () => {
      while (polling) await pollOnce();
    })();

    const projectionLag = async () => {
      const last = (await jsm.streams.info(STREAMS.lineage)).state.last_seq;
      const cp = await db.query<{ position: string }>(
        'SELECT position FROM projection_checkpoints WHERE name = ANY($1)',
        [LINEAGE_PROJECTIONS],
      );
      return Math.max(0, ...cp.rows.map((r) => last - Number(r.position)));
    };
    const queues = async (): Promise<Queues> => {
      let mqtt = 0;
      for await (const c of jsm.consumers.list('$MQTT_msgs'))
        mqtt = Math.max(mqtt, c.num_pending + c.num_ack_pending);
      return {
        mqtt_to_bridge: mqtt,
        ingress: await ingressBacklog(jsm),
        projection_lag: await projectionLag(),
      };
    };
    const drained = async (timeoutMs: number) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const s = lastStats();
        const ingress = await ingressBacklog(jsm);
        const lag = await projectionLag();
        if (s && s.pending_rows === 0 && s.inflight_batches === 0 && ingress === 0 && lag === 0) return;
        if (Date.now() > deadline)
          throw new Error(
            `not drained after ${timeoutMs} ms: ${JSON.stringify(s)}, ingress ${ingress}, projection lag ${lag}`,
          );
        await sleep(200);
      }
    };
    const quantiles = (from: number, to: number) => {
      const xs = samples.filter((s) => s.committed >= from && s.committed < to).map((s) => s.ms);
      return percentiles(xs);
    };

    // Sustained rate: steps of offered load.
    const stepMs = ctx.sizes.fleet1kStepSeconds * 1000;
    const steps: Step[] = [];
    const runStep = async (offered: number): Promise<Step> => {
      const before = lastStats()!;
      send(`rate ${Math.round(offered)}`);
      const start = Date.now();
      await sleep(stepMs);
      const end = Date.now();
      const q0 = await queues().catch(() => ({ mqtt_to_bridge: -1, ingress: -1, projection_lag: -1 }));
      // Markers committed in the last two thirds, seen by now or within the bound.
      await sleep(Math.min(KEEP_UP_MS, 1000));
      const after = lastStats()!;
      const span = (after.t - before.t) / 1000 || stepMs / 1000;
      const q = quantiles(start + stepMs / 3, end);
      const unreceipted = after.committed_rows - after.receipted_rows;
      const batches = after.published_batches - before.published_batches;
      const step: Step = {
        offered: Math.round(offered),
        committed_rows_per_s: Math.round((after.committed_rows - before.committed_rows) / span),
        batches_per_s: Math.round(batches / span),
        rows_per_batch:
          Math.round(((after.published_rows - before.published_rows) / Math.max(1, batches)) * 10) / 10,
        p50_ms: q.p50,
        p99_ms: q.p99,
        unreceipted_rows: unreceipted,
        queues: q0,
        kept_up: q.n > 0 && q.p99 <= KEEP_UP_MS && unreceipted < offered * 2,
      };
      steps.push(step);
      ctx.log(
        `    offered ${step.offered} rows/s: ${step.committed_rows_per_s} committed/s, ${step.batches_per_s} batches/s of ${step.rows_per_batch} rows, p50 ${step.p50_ms} / p99 ${step.p99_ms} ms, ${unreceipted} rows not receipted, queues ${JSON.stringify(q0)}: ${step.kept_up ? 'kept up' : 'behind'}`,
      );
      return step;
    };
    const probe = ctx.rss.begin([...cloud.tracked, tracked]);
    const rampStart = Date.now();
    const rampQueryMs = queryMs;
    let best: Step | undefined;
    let failed: Step | undefined;
    for (let offered = ctx.sizes.fleet1kStartRate; ; offered *= 1.5) {
      const s = await runStep(offered);
      if (!s.kept_up && !best && offered > ctx.sizes.fleet1kStartRate / 4) {
        // Behind at the first step already: drain, then start lower.
        send('rate 0');
        await drained(120_000);
        offered /= 3;
        continue;
      }
      if (!s.kept_up) {
        failed = s;
        break;
      }
      best = s;
      if (Date.now() > ctx.deadline || Date.now() - rampStart > 180_000) break;
    }
    send('rate 0');
    if (best && failed) {
      // One step between the last kept up and the first behind, after the queue drained.
      await drained(120_000);
      const mid = Math.sqrt(best.offered * failed.offered);
      const s = await runStep(mid);
      if (s.kept_up) best = s;
      send('rate 0');
    }
    await drained(120_000);
    const sustainedRate = best?.committed_rows_per_s ?? 0;
    const sustained: StageResult = {
      group: 'full',
      stage: 'full.sustained.fleet1k',
      label: `full system, ${label} (simulated): sustained`,
      profile: ctx.profile,
      row_bytes: size,
      rows_per_run: sustainedRate * ctx.sizes.fleet1kStepSeconds,
      runs: steps.map((s) => s.committed_rows_per_s),
      rows_per_s: spread([sustainedRate]),
      rss_mb: probe.end(),
      cpu_s: probe.cpu(),
      backlog: { steps },
      note: `offered load in ${ctx.sizes.fleet1kStepSeconds} s steps (×1.5, one refining step); the highest step kept up (p99 ≤ ${KEEP_UP_MS} ms, < 2 s of rows unreceipted); transactions of 1–5 rows, flush 100 ms, window 4; steps: ${steps.map((s) => `${s.offered}${s.kept_up ? '' : '✗'}`).join(' ')}`,
    };
    sustained.note += `; the read-store poller's statements took ${((queryMs - rampQueryMs) / 1000).toFixed(1)} s over ${((Date.now() - rampStart) / 1000).toFixed(1)} s`;
    ctx.log(`  ${sustained.label}: ${sustainedRate.toLocaleString('en-US')} rows/s`);

    // Freshness at half the sustained rate.
    const rate = Math.max(1, sustainedRate / 2);
    const freshProbe = ctx.rss.begin([...cloud.tracked, tracked]);
    const before = lastStats()!;
    send(`rate ${Math.round(rate)}`);
    const fresh0 = Date.now();
    const freshQueryMs = queryMs;
    await sleep(ctx.sizes.fleet1kFreshSeconds * 1000);
    send('rate 0');
    const fresh1 = Date.now();
    await drained(120_000);
    await sleep(Math.max(300, cycleMs / Math.max(1, cycles)) * 2);
    const after = lastStats()!;
    const written = after.committed_rows - before.committed_rows;
    const freshS = (fresh1 - fresh0) / 1000;
    const lat = quantiles(fresh0, fresh1);
    const freshness: StageResult = {
      group: 'full',
      stage: 'full.freshness.fleet1k',
      label: `full system, ${label} (simulated): freshness at 50 %`,
      profile: ctx.profile,
      row_bytes: size,
      rows_per_run: written,
      runs: [Math.round(written / freshS)],
      rows_per_s: spread([written / freshS]),
      latency_ms: lat,
      latency_of: 'commit → visible in the read store',
      rss_mb: freshProbe.end(),
      cpu_s: freshProbe.cpu(),
      note: `target ${Math.round(rate)} rows/s for ${ctx.sizes.fleet1kFreshSeconds} s; ${after.published_batches - before.published_batches} batches; read store polled ${POLL_CHUNK} tables a statement, a full cycle every ${Math.round(cycleMs / Math.max(1, cycles))} ms (in the latency), its statements took ${((queryMs - freshQueryMs) / 1000).toFixed(1)} s in all; a marker overwritten before the poller read it is not counted`,
    };
    ctx.log(
      `  ${freshness.label}: p50 ${lat.p50} ms, p99 ${lat.p99} ms at ${Math.round(written / freshS)} rows/s (poll cycle ${Math.round(cycleMs / Math.max(1, cycles))} ms)`,
    );
    return [sustained, freshness];
  } catch (err) {
    throw new Error(`${(err as Error).message}\nsim: ${sim.output().slice(-1500)}\n${cloud.output()}`, {
      cause: err,
    });
  } finally {
    polling = false;
    await poller?.catch(() => undefined);
    send('stop');
    await Promise.race([new Promise((r) => sim.child.once('exit', r)), sleep(10_000)]);
    await sim.stop();
    forget();
    await db.end();
    await nc.close();
  }
}

/**
 * Claim and approve every device's review through the API (16 at a time), then wait for each
 * device's mirror table; returns the tables in device order.
 */
async function approve(db: pg.Client, cloud: Cloud, prefix: string, n: number): Promise<string[]> {
  const names = Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
  const deadline = Date.now() + 180_000;
  let reviews: { device_name: string; lineage_id: string; review_id: string }[] = [];
  for (;;) {
    reviews = (
      await db.query<{ device_name: string; lineage_id: string; review_id: string }>(
        `SELECT l.device_name, l.lineage_id, r.review_id
           FROM edge_table_lineages l JOIN edge_schema_reviews r ON r.lineage_id = l.lineage_id
          WHERE l.device_name = ANY($1) AND r.status = 'queued' AND l.staged_rows >= 1`,
        [names],
      )
    ).rows;
    if (reviews.length >= n) break;
    if (Date.now() > deadline) throw new Error(`only ${reviews.length} of ${n} reviews queued`);
    await sleep(500);
  }
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < reviews.length) {
        const r = reviews[next++]!;
        await api(`${cloud.base}/schema-reviews/${r.review_id}/claim`, {
          method: 'POST',
          body: { action_version: 1 },
        });
        await api(`${cloud.base}/schema-reviews/${r.review_id}/approve`, {
          method: 'POST',
          body: { action_version: 2 },
        });
      }
    }),
  );
  const lineageOf = new Map(reviews.map((r) => [r.device_name, r.lineage_id]));
  for (;;) {
    const t = await db.query<{ lineage_id: string; table_name: string }>(
      `SELECT lineage_id, table_name FROM edge_mirror_tables WHERE status = 'current' AND lineage_id = ANY($1)`,
      [[...lineageOf.values()]],
    );
    const byLineage = new Map(t.rows.map((r) => [r.lineage_id, r.table_name]));
    if (byLineage.size >= n) {
      // The probe row replayed from staging into every table.
      const tables = names.map((d) => byLineage.get(lineageOf.get(d)!)!);
      const have = await db.query<{ c: string }>(
        `SELECT count(*) AS c FROM (${tables.map((x) => `SELECT 1 FROM "${x}" WHERE id = 0`).join(' UNION ALL ')}) s`,
      );
      if (Number(have.rows[0]!.c) >= n) return tables;
    }
    if (Date.now() > deadline) throw new Error(`only ${byLineage.size} of ${n} mirror tables after approval`);
    await sleep(500);
  }
}
