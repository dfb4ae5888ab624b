/**
 * Helpers for the read-side end-to-end suites: cloud roles as separate child processes, a seeded
 * application writer, the API flows (review, mirror rows), and the truth to compare against (the
 * lineage's events folded by the domain, the projections' checkpoints against their streams).
 */
import type Database from 'better-sqlite3';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { tableJournal } from '../../edge-agent/testing/mirror';
import { lineageDecider } from '../../domain/lineage/decide';
import type { ActiveLineage, RowsLineage } from '../../domain/lineage/state';
import { fold } from '../../domain/shared/decider';
import { JetStreamEventStore } from '../../infra/nats/event-store';
import { checkpointNames, createProjections, type Page, type ReadStore } from '../../projections';
import { type Managed, startProcess } from './proc';
import { getJson, postJson, ROOT, TEST_PROJECT } from './stack';
import { waitFor } from './wait';

export const seedFromEnv = (): number => Number(process.env.SLUICE_SEED ?? Date.now() % 1_000_000);

export type CloudRole = 'bridge' | 'worker' | 'projector';

/** The log line each role prints once it is serving. */
export const READY: Record<CloudRole, string> = {
  bridge: 'bridge connected',
  worker: 'worker started',
  projector: 'projector started',
};

export type RoleEnv = Readonly<{
  natsUrl: string;
  mqttUrl: string;
  readStore: string;
  bridgeClientId?: string;
  extra?: Record<string, string>;
}>;

/** `sluice <role>` as a child process (not waited for: see `waitReady`). */
export function startRole(role: CloudRole, o: RoleEnv): Managed {
  return startProcess(join(ROOT, 'bin', 'sluice'), [role], {
    env: {
      ...process.env,
      SLUICE_NATS_URL: o.natsUrl,
      SLUICE_MQTT_URL: o.mqttUrl,
      SLUICE_READ_STORE: o.readStore,
      SLUICE_PROJECT_ID: TEST_PROJECT,
      SLUICE_BRIDGE_CLIENT_ID: o.bridgeClientId ?? 'bridge-readside',
      SLUICE_LOG_LEVEL: 'info',
      ...o.extra,
    },
  });
}

export async function waitReady(proc: Managed, role: CloudRole, timeoutMs = 30_000): Promise<void> {
  await waitFor(
    () => {
      if (proc.child.exitCode !== null || proc.child.signalCode !== null)
        throw new Error(`${role} exited: ${proc.output().slice(-2000)}`);
      return proc.output().includes(READY[role]);
    },
    { timeoutMs, message: `${role} ready`, intervalMs: 25 },
  );
}

/** SIGTERM, and SIGKILL if it has not exited within `graceMs`: cleanup never hangs. */
export async function shutdown(proc: Managed | undefined, graceMs = 10_000): Promise<void> {
  if (!proc) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    proc.stop(),
    new Promise<void>((resolve) => {
      timer = setTimeout(() => void proc.kill().then(resolve), graceMs);
    }),
  ]);
  clearTimeout(timer);
}

export const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ------------------------------------------------------------------ API

export type LineageView = {
  lineage_id: string;
  device_name: string;
  source_table: string;
  status: string;
  pause_reasons: string[];
  staged_rows: number;
  replaying_rows: number;
  materialized_rows: number;
  last_commit_seq: number | null;
  materialization_errors: number;
  last_error: string | null;
  replay: { replay_id: string; state: string } | null;
  materialization: { table_name: string | null; errors: number; failed_rows: number };
};
export type MirrorItem = {
  key: Record<string, unknown>;
  row: Record<string, unknown>;
  source_commit_seq: number;
};
export type ControlView = {
  control_id: string;
  lineage_id: string;
  control_kind: string;
  server_watermark: number;
  reason: string;
  status: string;
  deliveries: number;
};

/** The lineage of a device's table, once the read store shows it. */
export async function findLineage(
  base: string,
  device: string,
  table: string,
  timeoutMs = 30_000,
): Promise<LineageView> {
  return waitFor(
    async () => {
      const r = await getJson<Page<LineageView>>(`${base}/lineages?device_id=${encodeURIComponent(device)}`);
      return r.body.items?.find((l) => l.source_table === table);
    },
    { timeoutMs, message: `lineage ${device}/${table} in the API` },
  );
}

export async function lineage(base: string, id: string): Promise<LineageView> {
  const r = await getJson<LineageView>(`${base}/lineages/${id}`);
  if (r.status !== 200) throw new Error(`GET lineage ${id}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Claim and approve the lineage's open review through the HTTP API, as an operator would. */
export async function approveReview(
  base: string,
  lineageId: string,
  columnActions?: readonly { column: string; action: string; mirror_column_name?: string }[],
): Promise<void> {
  const review = await waitFor(
    async () => {
      const r = await getJson<Page<{ review_id: string; action_version: number; status: string }>>(
        `${base}/schema-reviews?lineage_id=${lineageId}&status=queued`,
      );
      return r.body.items?.[0];
    },
    { message: `a queued review of ${lineageId}` },
  );
  const claim = await postJson<{ events: unknown[] }>(`${base}/schema-reviews/${review.review_id}/claim`, {
    action_version: review.action_version,
  });
  if (claim.status !== 200) throw new Error(`claim: ${claim.status} ${JSON.stringify(claim.body)}`);
  const approve = await postJson(`${base}/schema-reviews/${review.review_id}/approve`, {
    action_version: review.action_version + 1,
    ...(columnActions ? { column_actions: columnActions } : {}),
  });
  if (approve.status !== 200) throw new Error(`approve: ${approve.status} ${JSON.stringify(approve.body)}`);
}

/** Every mirror row of a lineage, through the API's pages. */
export async function mirrorRows(base: string, lineageId: string): Promise<MirrorItem[]> {
  const out: MirrorItem[] = [];
  for (let page = 1; ; page++) {
    const r = await getJson<Page<MirrorItem>>(
      `${base}/lineages/${lineageId}/mirror-rows?limit=500&page=${page}`,
    );
    if (r.status !== 200) throw new Error(`mirror-rows: ${r.status} ${JSON.stringify(r.body)}`);
    out.push(...r.body.items);
    if (r.body.items.length < 500) return out;
  }
}

export async function stagedTotal(base: string, lineageId: string): Promise<number> {
  const r = await getJson<Page<unknown>>(`${base}/lineages/${lineageId}/staged-rows?limit=1`);
  return r.body.total;
}

export async function controls(base: string, lineageId: string): Promise<ControlView[]> {
  const r = await getJson<{ items: ControlView[] }>(
    `${base}/pending-controls?status=all&lineage_id=${lineageId}&limit=500`,
  );
  return r.body.items;
}

// ------------------------------------------------------------------ truth

/** The lineage as its events say it is: the domain's own fold over JetStream. */
export async function domainState(nc: NatsConnection, lineageId: string): Promise<ActiveLineage> {
  const store = await JetStreamEventStore.create(nc);
  const { events } = await store.load(lineageId);
  const s = fold(lineageDecider, events);
  if (s.status !== 'registered') throw new Error(`lineage ${lineageId} is ${s.status}`);
  return s;
}

/** domainState of a lineage of row changes (its watermark, dedupe ranges, verify runs). */
export async function rowsDomainState(nc: NatsConnection, lineageId: string): Promise<RowsLineage> {
  const s = await domainState(nc, lineageId);
  if (s.kind !== 'rows') throw new Error(`lineage ${lineageId} captures ${s.kind}, not rows`);
  return s;
}

/** Every projection's checkpoint has reached its stream's last sequence. */
export async function projectionsCaughtUp(nc: NatsConnection, store: ReadStore): Promise<boolean> {
  const jsm = await jetstreamManager(nc);
  const streams = new Map<string, number>();
  for (const p of createProjections()) {
    if (!streams.has(p.stream)) streams.set(p.stream, (await jsm.streams.info(p.stream)).state.last_seq);
  }
  const cps = await store.db.selectFrom('projection_checkpoints').select(['name', 'position']).execute();
  // A partitioned projection has caught up when every one of its partitions has.
  return createProjections().every((p) =>
    checkpointNames(p).every((name) => {
      const cp = cps.find((c) => c.name === name);
      return cp !== undefined && Number(cp.position) >= streams.get(p.stream)!;
    }),
  );
}

/** What the agent has journaled for a table (largest commit_seq) and what still waits for confirmation. */
export function agentBacklog(app: Database.Database, table: string): { seq: number; journal: number } {
  const t = tableJournal(app, table);
  return { seq: t.seq, journal: t.pending };
}

export async function waitForTriggers(app: Database.Database, table: string, timeoutMs = 30_000) {
  await waitFor(
    () =>
      (
        app
          .prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?")
          .get(table) as { n: number }
      ).n >= 3,
    { timeoutMs, message: `capture triggers on ${table}` },
  );
}

// ------------------------------------------------------------------ application load

export type Writer = Readonly<{
  /** Stop writing; resolves with the number of transactions committed. */
  stop: () => Promise<number>;
  transactions: () => number;
}>;

/**
 * The application: runs `step` (one transaction of the app's own writes) over and over, pacing
 * itself with a random pause of up to `paceMs` so that the agent and the cloud share the CPU.
 */
export function startWriter(
  app: Database.Database,
  random: () => number,
  step: (app: Database.Database, random: () => number) => void,
  paceMs = 8,
): Writer {
  let running = true;
  let n = 0;
  let failure: unknown;
  const tx = app.transaction(() => step(app, random));
  const done = (async () => {
    while (running) {
      // IMMEDIATE: take the write lock up front, so the agent's concurrent journal cleanup makes
      // us wait (busy_timeout) instead of failing a read-then-write upgrade with SQLITE_BUSY.
      tx.immediate();
      n++;
      await delay(random() * paceMs);
    }
  })().catch((err: unknown) => {
    failure = err;
  });
  return {
    stop: async () => {
      running = false;
      await done;
      if (failure) throw failure;
      return n;
    },
    transactions: () => n,
  };
}

/** The lineage's events, one short line each (for failure messages). */
export async function eventTrail(nc: NatsConnection, lineageId: string): Promise<string> {
  const store = await JetStreamEventStore.create(nc);
  const { events } = await store.load(lineageId);
  const seqs = (rows: readonly { commit_seq: number }[]) => {
    if (rows.length === 0) return '';
    const s = rows.map((r) => r.commit_seq);
    return rows.length > 3 ? `${s[0]}..${s.at(-1)} (${rows.length})` : s.join(',');
  };
  return events
    .map((e) => {
      switch (e.type) {
        case 'RowsAccepted':
        case 'RowsStaged':
          return `${e.type} ${seqs(e.data.rows)}`;
        case 'MaterializationFailed':
          return `${e.type} source_seq=${e.data.source_seq} count=${e.data.consecutive_failures} rows=${seqs(e.data.rows)}`;
        case 'LineagePaused':
        case 'LineageResumed':
          return `${e.type} ${e.data.reason}`;
        case 'ControlIssued':
          return `${e.type} ${e.data.control_kind} watermark=${e.data.server_watermark}`;
        default:
          return e.type;
      }
    })
    .join('\n');
}
