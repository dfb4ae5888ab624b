/**
 * The full system, every part real and in its own process: the application writing into SQLite,
 * the agent (`sluice-agent run`, or many agents in one process), nats-server with JetStream and
 * its MQTT listener, `sluice bridge`, `sluice worker`, `sluice projector` and `sluice api` on a
 * PostgreSQL read store. Every lineage is approved through the HTTP API like an operator does,
 * and a row counts only once GET …/mirror-rows shows it.
 *
 * Visibility probe: row id 0 (the smallest key, so the first row of mirror-rows page 1) is
 * rewritten after the measured rows with a new marker in `n`. Commit order is kept per lineage,
 * so when the API shows the marker every row committed before it is in the mirror too.
 */
import { journalBacklog } from '../../edge-agent/testing/mirror';
import type Database from 'better-sqlite3';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { STREAMS } from '../../infra/nats/names';
import { createProjections } from '../../projections/registry';
import { checkpointNames, projectionOfCheckpoint } from '../../projections/runner/checkpoints';
import type { Page } from '../../projections/store/page';
import { ingressBacklog } from '../../worker/ingress-partitions';
import { freePort, type Managed, startProcess, tempDir } from '../../tests/support/proc';
import { ROOT, TEST_PROJECT, TEST_TOKEN } from '../../tests/support/stack';
import { waitFor } from '../../tests/support/wait';
import type { Ctx, StageResult } from '../lib/context';
import { type Item, items } from '../lib/data';
import { measure, type Run, seconds, sleep } from '../lib/measure';
import { onCleanup } from '../lib/cleanup';
import type { Tracked } from '../lib/rss';
import { percentiles, spread } from '../lib/stats';
import { appWriter, openAppDb } from './raw';

const SLUG = 'bench';
const PROBE_BODY = 'probe';

export type Cloud = {
  base: string;
  readStoreUrl: string;
  tracked: Tracked[];
  stop: () => Promise<void>;
  output: () => string;
};

/**
 * The command that runs a TypeScript entry point the way bin/sluice and bin/sluice-agent do
 * (node with the tsx loader), with `--cpu-prof` into the profile directory when asked (Node does
 * not take --cpu-prof from NODE_OPTIONS).
 */
export function nodeCommand(ctx: Ctx, who: string, script: string, args: string[]): [string, string[]] {
  const prof: string[] = [];
  if (ctx.cpuProfDir) {
    const dir = join(ctx.cpuProfDir, `${ctx.profile}-${who}`);
    mkdirSync(dir, { recursive: true });
    prof.push('--cpu-prof', `--cpu-prof-dir=${dir}`);
  }
  return [
    process.execPath,
    [...prof, '--import', join(ROOT, 'node_modules/tsx/dist/loader.mjs'), join(ROOT, script), ...args],
  ];
}

/** Wait for every process to print its ready line; fail at once if one exits. */
export async function waitReady(
  procs: readonly { name: string; proc: Managed; ready: string }[],
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const dead = procs.find((p) => p.proc.child.exitCode !== null || p.proc.child.signalCode !== null);
    if (dead) throw new Error(`${dead.name} exited before it was ready:\n${dead.proc.output().slice(-2000)}`);
    if (procs.every((p) => p.proc.output().includes(p.ready))) return;
    if (Date.now() > deadline)
      throw new Error(
        `not ready after ${timeoutMs} ms: ${procs
          .filter((p) => !p.proc.output().includes(p.ready))
          .map((p) => p.name)
          .join(', ')}`,
      );
    await sleep(20);
  }
}

/** `sluice bridge`, `worker`, `projector`, `api`: one process each, on the profile's servers. */
export async function startCloud(ctx: Ctx, readStoreUrl: string): Promise<Cloud> {
  const port = await freePort();
  const env = {
    ...process.env,
    SLUICE_NATS_URL: ctx.nats.url,
    SLUICE_MQTT_URL: ctx.nats.mqttUrl,
    SLUICE_READ_STORE: readStoreUrl,
    SLUICE_API_PORT: String(port),
    SLUICE_PROJECT_ID: TEST_PROJECT,
    SLUICE_BRIDGE_CLIENT_ID: `bench-bridge-${port}`,
    SLUICE_API_TOKENS: JSON.stringify([
      {
        token: TEST_TOKEN,
        project_id: TEST_PROJECT,
        permissions: ['PROJECT_CAN_READ_DEVICES', 'PROJECT_CAN_MANAGE_DEVICES'],
        name: 'bench',
      },
    ]),
    SLUICE_LOG_LEVEL: 'info',
    ...(ctx.streamReplicas ? { SLUICE_STREAM_REPLICAS: String(ctx.streamReplicas) } : {}),
  };
  const roles = ['bridge', 'worker', 'projector', 'api'] as const;
  const ready = {
    bridge: 'bridge connected',
    worker: 'worker started',
    projector: 'projector started',
    api: 'listening',
  };
  const procs: Record<string, Managed> = {};
  for (const r of roles) {
    const [cmd, args] = nodeCommand(ctx, r, 'cli/sluice.ts', [r]);
    procs[r] = startProcess(cmd, args, { env });
    const p = procs[r];
    onCleanup(() => p.stop());
  }
  const output = () => roles.map((r) => `${r}: ${procs[r]!.output().slice(-1500)}`).join('\n');
  await waitReady(
    roles.map((r) => ({ name: `sluice ${r}`, proc: procs[r]!, ready: ready[r] })),
    90_000,
  );
  const apiUrl = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${apiUrl}/healthz`).catch(() => undefined))?.ok, {
    timeoutMs: 30_000,
    message: 'sluice api /healthz',
  });
  return {
    base: `${apiUrl}/core/api/v1/projects/${TEST_PROJECT}/edge`,
    readStoreUrl,
    tracked: roles.map((r) => ({ name: `sluice ${r}`, pids: () => [procs[r]!.child.pid!] })),
    output,
    // In order: stop taking uplinks first, the API last.
    stop: async () => {
      for (const r of roles) await procs[r]!.stop();
    },
  };
}

export async function api<T>(url: string, init?: { method: string; body: unknown }): Promise<T> {
  const r = await fetch(url, {
    method: init?.method ?? 'GET',
    headers: {
      authorization: `Bearer ${TEST_TOKEN}`,
      ...(init ? { 'content-type': 'application/json', 'idempotency-key': `bench-${Math.random()}` } : {}),
    },
    ...(init ? { body: JSON.stringify(init.body) } : {}),
  });
  const body = (await r.json()) as T;
  if (!r.ok)
    throw new Error(`${init?.method ?? 'GET'} ${url}: ${r.status} ${JSON.stringify(body).slice(0, 300)}`);
  return body;
}

type MirrorRow = { key: Record<string, unknown>; row: Record<string, unknown> };

/** One device: its application database and the marker its probe row carries last. */
export class Device {
  readonly dir: string;
  readonly db: Database.Database;
  readonly write: (rows: readonly Item[], perTx: number) => void;
  lineageId = '';
  private marker = 0;
  constructor(
    ctx: Ctx,
    readonly name: string,
  ) {
    this.dir = tempDir('bench-dev');
    this.db = openAppDb(join(this.dir, 'app.db'), ctx.sqliteSync);
    this.write = appWriter(this.db);
    this.db.prepare('INSERT INTO items (id, body, n) VALUES (0, ?, 0)').run(PROBE_BODY);
  }
  /** Rewrite the probe row with a new marker (in the caller's transaction, if any). */
  mark(): number {
    this.marker++;
    this.db.prepare('UPDATE items SET n = ? WHERE id = 0').run(this.marker);
    return this.marker;
  }
  /** The probe's marker the API shows now (-1 before the mirror has it). */
  async visible(base: string): Promise<number> {
    const p = await api<Page<MirrorRow>>(`${base}/lineages/${this.lineageId}/mirror-rows?limit=1`);
    const first = p.items[0];
    return first && Number(first.key.id) === 0 ? Number(first.row.n) : -1;
  }
  configYaml(mqttUrl: string, flushInterval = '100ms'): string {
    return [
      'connection:',
      '  transport: mqtt',
      `  server_url: ${JSON.stringify(mqttUrl)}`,
      `  device_id: ${JSON.stringify(this.name)}`,
      `  root_topic: ${JSON.stringify(`${SLUG}/${this.name}`)}`,
      '  mqtt:',
      '    clean_session: false',
      'sqlite-replication:',
      `  source_db_path: ${JSON.stringify(join(this.dir, 'app.db'))}`,
      `  state_db_path: ${JSON.stringify(join(this.dir, 'state.db'))}`,
      `  flush_interval: ${flushInterval}`,
      '  snapshot_on_first_run: true',
      '',
    ].join('\n');
  }
}

/** The agents of the devices: `sluice-agent run` for one, `bench/fleet.ts` for many. */
export type Agents = {
  start: () => Promise<void>;
  stop: () => Promise<void>;
  tracked: Tracked;
  output: () => string;
};

export function agentsFor(ctx: Ctx, devices: readonly Device[]): Agents {
  const files = devices.map((d) => {
    const f = join(d.dir, 'device.yaml');
    writeFileSync(f, d.configYaml(ctx.nats.mqttUrl));
    return f;
  });
  let proc: Managed | undefined;
  let forget: (() => void) | undefined;
  const one = devices.length === 1;
  return {
    start: async () => {
      const env = { ...process.env, SLUICE_LOG_LEVEL: 'info' };
      const [cmd, args] = one
        ? nodeCommand(ctx, 'agent', 'edge-agent/bin.ts', ['run', '--config', files[0]!])
        : nodeCommand(ctx, 'fleet', 'bench/fleet.ts', files);
      proc = startProcess(cmd, args, { env });
      const p = proc;
      forget = onCleanup(() => p.stop());
      await waitReady([{ name: 'agent', proc, ready: one ? 'mqtt_connected' : 'fleet ready' }], 60_000);
    },
    stop: async () => {
      await proc?.stop();
      forget?.();
    },
    tracked: {
      name: one ? 'sluice-agent' : `agents (${devices.length} in one process)`,
      pids: () => (proc?.child.pid ? [proc.child.pid] : []),
    },
    output: () => proc?.output() ?? '',
  };
}

/** Each device's lineage, approved through the API (claim, then approve every column as is). */
async function approveAll(cloud: Cloud, devices: readonly Device[]): Promise<void> {
  const lanes = 5;
  let next = 0;
  const lane = async () => {
    while (next < devices.length) {
      const d = devices[next++]!;
      const l = await waitFor(
        async () => {
          const p = await api<Page<{ lineage_id: string; staged_rows: number }>>(
            `${cloud.base}/lineages?device_id=${d.name}`,
          );
          return p.items.find((x) => x.staged_rows >= 1);
        },
        { timeoutMs: 60_000, message: `the lineage of ${d.name} with its first rows staged` },
      );
      d.lineageId = l.lineage_id;
      const reviews = await waitFor(
        async () =>
          (
            await api<Page<{ review_id: string }>>(
              `${cloud.base}/schema-reviews?status=queued&lineage_id=${l.lineage_id}`,
            )
          ).items[0],
        { timeoutMs: 30_000, message: `the review of ${d.name}` },
      );
      await api(`${cloud.base}/schema-reviews/${reviews.review_id}/claim`, {
        method: 'POST',
        body: { action_version: 1 },
      });
      await api(`${cloud.base}/schema-reviews/${reviews.review_id}/approve`, {
        method: 'POST',
        body: { action_version: 2 },
      });
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));
  await waitUntilVisible(
    cloud,
    devices,
    devices.map(() => 0),
    120_000,
  );
}

/** Poll the API until every device shows at least its marker; `concurrency` requests at once. */
async function waitUntilVisible(
  cloud: Cloud,
  devices: readonly Device[],
  markers: readonly number[],
  timeoutMs: number,
): Promise<void> {
  const pending = new Set(devices.map((_, i) => i));
  const deadline = Date.now() + timeoutMs;
  while (pending.size > 0) {
    if (Date.now() > deadline)
      throw new Error(
        `${pending.size} device(s) not visible in the mirror after ${timeoutMs} ms:\n${cloud.output()}`,
      );
    const batch = [...pending].slice(0, 8);
    await Promise.all(
      batch.map(async (i) => {
        if ((await devices[i]!.visible(cloud.base)) >= markers[i]!) pending.delete(i);
      }),
    );
    if (pending.size > 0) await sleep(devices.length > 1 ? 2 : 5);
  }
}

/**
 * The projections that follow the lineage stream: their checkpoints are positions in it. (The
 * registry and rejections projections follow streams of their own; a lag against the lineage
 * stream's last sequence means nothing for them.)
 */
export const LINEAGE_PROJECTIONS: readonly string[] = createProjections()
  .filter((p) => p.stream === STREAMS.lineage)
  .flatMap((p) => checkpointNames(p));

export type Backlog = { journal_rows: number; ingress_msgs: number; projection_lag_msgs: number };

/**
 * Where the queue is while the pipeline runs: rows still in the devices' journals (agent), uplinks
 * in the ingress stream not yet decided (worker), and lineage events the slowest projection has not
 * applied (projector). The stage with the standing queue is the one that limits.
 */
export async function backlogSampler(ctx: Ctx, cloud: Cloud, devices: readonly Device[]) {
  const nc = await connect({ servers: ctx.nats.url.split(',') });
  const jsm = await jetstreamManager(nc);
  const db = new pg.Client({ connectionString: cloud.readStoreUrl });
  await db.connect();
  const peak: Backlog = { journal_rows: 0, ingress_msgs: 0, projection_lag_msgs: 0 };
  const sum: Backlog = { journal_rows: 0, ingress_msgs: 0, projection_lag_msgs: 0 };
  let samples = 0;
  const lagBy: Record<string, number> = {};
  let on = false;
  let loop: Promise<void> | undefined;
  const sample = async () => {
    const journal = devices.reduce((n, d) => n + journalBacklog(d.db), 0);
    const ingress = await ingressBacklog(jsm);
    const last = (await jsm.streams.info(STREAMS.lineage)).state.last_seq;
    const cp = await db.query<{ name: string; position: string }>(
      'SELECT name, position FROM projection_checkpoints WHERE name = ANY($1)',
      [LINEAGE_PROJECTIONS],
    );
    // Per projection, its slowest checkpoint (a partitioned one has one per partition).
    const lagNow: Record<string, number> = {};
    for (const r of cp.rows) {
      const name = projectionOfCheckpoint(r.name);
      lagNow[name] = Math.max(lagNow[name] ?? 0, last - Number(r.position));
    }
    for (const [name, lag] of Object.entries(lagNow)) lagBy[name] = (lagBy[name] ?? 0) + lag;
    const now: Backlog = {
      journal_rows: journal,
      ingress_msgs: ingress,
      projection_lag_msgs: Math.max(0, ...cp.rows.map((r) => last - Number(r.position))),
    };
    samples++;
    for (const k of Object.keys(now) as (keyof Backlog)[]) {
      peak[k] = Math.max(peak[k], now[k]);
      sum[k] += now[k];
    }
  };
  return {
    start: () => {
      on = true;
      loop = (async () => {
        while (on) {
          await sample().catch(() => undefined);
          await sleep(100);
        }
      })();
    },
    stop: async (): Promise<{
      peak: Backlog;
      mean: Backlog;
      mean_lag_by_projection: Record<string, number>;
    }> => {
      on = false;
      await loop;
      await db.end();
      await nc.close();
      const mean = Object.fromEntries(
        Object.entries(sum).map(([k, v]) => [k, Math.round(v / Math.max(1, samples))]),
      ) as Backlog;
      const byProjection = Object.fromEntries(
        Object.entries(lagBy).map(([k, v]) => [k, Math.round(v / Math.max(1, samples))]),
      );
      return { peak, mean, mean_lag_by_projection: byProjection };
    },
  };
}

export const describeBacklog = (b: { mean: Backlog }): string =>
  `mean queue: journal ${b.mean.journal_rows} rows, ingress ${b.mean.ingress_msgs} msgs, projection lag ${b.mean.projection_lag_msgs} msgs`;

/**
 * Sustained rows/s (the devices' rows written flat out, until the API shows all of them), then
 * freshness (commit → visible) with the application writing at half that rate.
 */
export async function fullSystem(
  ctx: Ctx,
  cloud: Cloud,
  size: number,
  deviceCount: number,
): Promise<{ results: StageResult[]; device?: Device; agents?: Agents }> {
  const tag = `${ctx.profile}-${size}-${deviceCount}-${Date.now() % 100000}`;
  const devices = Array.from({ length: deviceCount }, (_, i) => new Device(ctx, `bd-${tag}-${i}`));
  const agents = agentsFor(ctx, devices);
  const total = deviceCount === 1 ? ctx.sizes.fullRows : ctx.sizes.fleetRows;
  const perDevice = Math.floor(total / deviceCount);
  // On a cluster the stages are the single-node ones with `.cluster` appended.
  const onCluster = (ctx.streamReplicas ?? 1) > 1;
  const suffix = (deviceCount === 1 ? '' : '.fleet') + (onCluster ? '.cluster' : '');
  const label =
    (deviceCount === 1 ? '1 device' : `${deviceCount} devices`) +
    (onCluster ? `, 3-node cluster R${ctx.streamReplicas}` : '');
  await agents.start();
  try {
    await approveAll(cloud, devices);

    const backlog = await backlogSampler(ctx, cloud, devices);
    backlog.start();
    const sustained = await measure(
      ctx,
      {
        group: 'full',
        stage: `full.sustained${suffix}`,
        label: `full system, ${label}: commit → visible`,
        row_bytes: size,
        note: `${perDevice * deviceCount} rows (100/tx) then the probe; PostgreSQL read store; agent flush 100 ms`,
      },
      async (run): Promise<Run> => {
        const markers: number[] = [];
        const t0 = process.hrtime.bigint();
        for (const [i, d] of devices.entries())
          d.write(items(perDevice, size, ctx.sizes.keys, 1000 + run * 97 + i, 1), 100);
        for (const d of devices) markers.push(d.mark());
        await waitUntilVisible(cloud, devices, markers, 600_000);
        return { rows: perDevice * deviceCount, seconds: seconds(t0) };
      },
      { extraRss: [...cloud.tracked, agents.tracked] },
    );
    const queued = await backlog.stop();
    sustained.backlog = queued;
    sustained.note += `; ${describeBacklog(queued)}`;

    // Freshness at half the sustained rate: every tick each device commits its share with a new
    // probe marker; the poller records commit → first seen for every marker it sees.
    const rate = sustained.rows_per_s!.median / 2;
    const tickMs = deviceCount === 1 ? 20 : 100;
    const perTick = Math.max(1, Math.round((rate * tickMs) / 1000 / deviceCount));
    const committedAt = devices.map(() => new Map<number, number>());
    const seen = devices.map(() => 0);
    const lat: number[] = [];
    let writing = true;
    let written = 0;
    const poller = (async () => {
      let cursor = 0;
      while (writing || seen.some((s, i) => s < Math.max(0, ...committedAt[i]!.keys()))) {
        const batch =
          devices.length === 1
            ? [0]
            : Array.from({ length: Math.min(8, devices.length) }, () => cursor++ % devices.length);
        await Promise.all(
          batch.map(async (i) => {
            const m = await devices[i]!.visible(cloud.base);
            const now = performance.now();
            if (m > seen[i]!) {
              const at = committedAt[i]!.get(m);
              if (at !== undefined) lat.push(now - at);
              seen[i] = m;
            }
          }),
        );
        await sleep(2);
      }
    })();
    const freshProbe = ctx.rss.begin([...cloud.tracked, agents.tracked]);
    const freshBacklog = await backlogSampler(ctx, cloud, devices);
    freshBacklog.start();
    const fresh0 = performance.now();
    const writer = devices.map((d, i) => {
      const rows = items(
        perTick * Math.ceil((ctx.sizes.freshnessSeconds * 1000) / tickMs) + 1,
        size,
        ctx.sizes.keys,
        7000 + i,
        1,
      );
      let off = 0;
      return () => {
        const part = rows.slice(off, (off += perTick));
        d.db.transaction(() => {
          d.write(part, part.length);
          committedAt[i]!.set(d.mark(), performance.now());
        })();
        written += part.length;
      };
    });
    for (let tick = 0; performance.now() - fresh0 < ctx.sizes.freshnessSeconds * 1000; tick++) {
      const due = fresh0 + tick * tickMs;
      if (due > performance.now()) await sleep(due - performance.now());
      for (const w of writer) w();
    }
    const freshS = (performance.now() - fresh0) / 1000;
    writing = false;
    await Promise.race([poller, sleep(60_000)]);
    const freshQueued = await freshBacklog.stop();
    const freshness: StageResult = {
      group: 'full',
      stage: `full.freshness${suffix}`,
      label: `full system, ${label}: freshness at 50 %`,
      profile: ctx.profile,
      row_bytes: size,
      rows_per_run: written,
      runs: [Math.round(written / freshS)],
      rows_per_s: spread([written / freshS]),
      latency_ms: percentiles(lat),
      latency_of: 'commit → visible in the API',
      rss_mb: {},
      backlog: freshQueued,
      note: `${describeBacklog(freshQueued)}; target ${Math.round(rate)} rows/s, a transaction every ${tickMs} ms per device, API polled${deviceCount > 1 ? ' 8 lineages at a time' : ' back to back'}`,
    };
    ctx.log(
      `  ${freshness.label}: p50 ${freshness.latency_ms!.p50.toFixed(0)} ms, p99 ${freshness.latency_ms!.p99.toFixed(0)} ms at ${Math.round(written / freshS)} rows/s`,
    );
    freshness.rss_mb = freshProbe.end();
    freshness.cpu_s = freshProbe.cpu();
    if (deviceCount === 1) return { results: [sustained, freshness], device: devices[0]!, agents };
    await agents.stop();
    for (const d of devices) d.db.close();
    return { results: [sustained, freshness] };
  } catch (err) {
    await agents.stop();
    for (const d of devices) d.db.close();
    throw err;
  }
}

/** A device offline while its application wrote a large journal, then back: drain rows/s. */
export async function drain(
  ctx: Ctx,
  cloud: Cloud,
  size: number,
  device: Device,
  agents: Agents,
): Promise<StageResult> {
  const rows = ctx.sizes.drainRows;
  let backlog: Awaited<ReturnType<Awaited<ReturnType<typeof backlogSampler>>['stop']>> | undefined;
  const result = await measure(
    ctx,
    {
      group: 'drain',
      stage: 'drain',
      label: 'backlog drain after offline (1 device)',
      row_bytes: size,
      note: `${rows} journaled rows; from the agent's MQTT connect until the API shows the last`,
    },
    async (run): Promise<Run> => {
      await agents.stop();
      device.write(items(rows, size, ctx.sizes.keys, 5000 + run, 1), 100);
      const marker = device.mark();
      const sampler = await backlogSampler(ctx, cloud, [device]);
      await agents.start();
      const t0 = process.hrtime.bigint();
      sampler.start();
      await waitUntilVisible(cloud, [device], [marker], 600_000);
      const s = seconds(t0);
      backlog = await sampler.stop();
      return { rows, seconds: s };
    },
    { extraRss: [...cloud.tracked, agents.tracked] },
  );
  await agents.stop();
  device.db.close();
  if (backlog) {
    result.backlog = backlog;
    result.note += `; last run's ${describeBacklog(backlog)}`;
  }
  return result;
}
