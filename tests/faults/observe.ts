/**
 * What the stores hold after (or during) a scenario, gathered for the checker: the lineages'
 * events from JetStream, the device's journal, the read store's mirror, staged rows, controls,
 * counters and rejections. Order matters when things still move: writes first, then the device's
 * pending journal, then the events, so a write confirmed in between is still seen as applied.
 */
import { sql } from 'kysely';
import { jetstreamManager } from '@nats-io/jetstream';
import { uuidv7 } from 'uuidv7';
import { journalBacklog, tableJournal } from '../../edge-agent/testing/mirror';
import type { LineageEvent } from '../../domain/lineage/events';
import { JetStreamEventStore } from '../../infra/nats/event-store';
import { ingressBacklog } from '../../worker/ingress-partitions';
import { Registry } from '../../infra/nats/registry';
import { rowsDomainState, projectionsCaughtUp } from '../support/readside';
import { TEST_PROJECT, TEST_TOKEN } from '../support/stack';
import { waitFor } from '../support/wait';
import type { LineageObservation, Observation, Rejection, TableImage, Write } from './checker';
import type { Cloud, Device } from './cloud';
import {
  deviceImage,
  devicePending,
  deviceWrites,
  keyText,
  TABLE_NAMES,
  TABLES,
  type TableName,
} from './workload';

export const SLUG = 'faults';

/** The lineage id of a device's table (the registry's atomic create agrees with the worker's). */
export async function lineageIdOf(cloud: Cloud, device: string, table: string): Promise<string> {
  const registry = await Registry.open(cloud.nc);
  const dev = await registry.resolveDevice(TEST_PROJECT, SLUG, device, uuidv7());
  return (await registry.resolveLineage(dev.device_id, table, uuidv7())).lineageId;
}

export async function loadEvents(cloud: Cloud, lineageId: string): Promise<LineageEvent[]> {
  const store = await JetStreamEventStore.create(cloud.nc);
  return [...(await store.load(lineageId)).events];
}

type Reply = { ok: boolean; error?: { code: string; message: string } };

async function command(cloud: Cloud, verb: string, body: unknown): Promise<Reply> {
  const r = await cloud.nc.request(`edge.cmd.${verb}`, JSON.stringify(body), { timeout: 10_000 });
  return r.json<Reply>();
}

/** Claim and approve the table's first review over NATS, as an operator script would. */
export async function approve(
  cloud: Cloud,
  device: string,
  table: string,
  actions?: readonly { column: string; action: string; mirror_column_name?: string }[],
): Promise<string> {
  const lineageId = await lineageIdOf(cloud, device, table);
  const review = await waitFor(
    async () => {
      const q = (await loadEvents(cloud, lineageId)).find((e) => e.type === 'SchemaReviewQueued');
      return q?.type === 'SchemaReviewQueued' ? q.data : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200, message: `the review of ${device}/${table}` },
  );
  const key = `faults-${review.review_id}`;
  const claim = await command(cloud, 'review.claim', {
    lineage_id: lineageId,
    review_id: review.review_id,
    action_version: review.action_version,
    idempotency_key: `${key}-claim`,
  });
  if (!claim.ok) throw new Error(`claim ${table}: ${JSON.stringify(claim.error)}`);
  const ok = await command(cloud, 'review.approve', {
    lineage_id: lineageId,
    review_id: review.review_id,
    action_version: review.action_version + 1,
    idempotency_key: `${key}-approve`,
    ...(actions ? { column_actions: actions } : {}),
  });
  if (!ok.ok) throw new Error(`approve ${table}: ${JSON.stringify(ok.error)}`);
  return lineageId;
}

export async function approveDeviceTables(cloud: Cloud, device: Device): Promise<void> {
  for (const t of TABLE_NAMES) await approve(cloud, device.name, t, TABLES[t].actions);
}

/** The agent has delivered everything it journaled and every projection has folded it. */
export async function quiesce(
  cloud: Cloud,
  lineages: readonly { id: string; lastSeq: () => number }[],
  timeoutMs: number,
): Promise<void> {
  const trace = process.env.SLUICE_FAULTS_TRACE === '1';
  let lastTrace = 0;
  // What was still unmet at the last probe: a timeout names it.
  let waiting = 'the first probe';
  await waitFor(
    async () => {
      for (const l of lineages) {
        const s = await rowsDomainState(cloud.nc, l.id);
        waiting = `${s.source_table}: cloud at commit ${s.last_commit_seq} of the device's ${l.lastSeq()}, ${s.staged_rows} staged, ${s.replaying_rows} replaying`;
        if (trace && Date.now() - lastTrace > 3_000) {
          lastTrace = Date.now();
          console.error(`[quiesce] ${new Date().toISOString()} ${waiting}\n${cloud.logs(600)}`);
        }
        if (s.last_commit_seq < l.lastSeq() || s.staged_rows !== 0 || s.replaying_rows !== 0) return false;
      }
      // A batch the device saw confirmed may still wait in the ingress work queue (a worker
      // killed before its ack: redelivered after the ack wait), behind later batches already
      // decided. Quiet means that queue is empty too.
      const backlog = await ingressBacklog(await jetstreamManager(cloud.nc));
      waiting = `${backlog} ingress messages undecided`;
      if (backlog !== 0) return false;
      waiting = 'projections behind their streams';
      return projectionsCaughtUp(cloud.nc, cloud.store);
    },
    { timeoutMs, intervalMs: 250, message: () => `every change delivered and folded (${waiting})` },
  );
}

/** Every uplink the bridge took in has been decided. */
export async function ingressEmpty(cloud: Cloud): Promise<boolean> {
  return (await ingressBacklog(await jetstreamManager(cloud.nc))) === 0;
}

/** A check while the device cannot confirm anything: first let the cloud decide what it has. */
export async function observeMidFault(cloud: Cloud, device: Device): Promise<Observation> {
  await waitFor(() => ingressEmpty(cloud), {
    timeoutMs: 60_000,
    intervalMs: 100,
    message: 'ingress drained',
  });
  return observe(cloud, device, { final: false });
}

export function deviceQuiet(device: Device): () => number {
  return () => journalBacklog(device.app);
}

export const tableSeq = (device: Device, table: string) => (): number => tableJournal(device.app, table).seq;

/**
 * The mirror of a lineage as an operator reads it (`GET …/mirror-rows`, every page), keyed like
 * `deviceImage`: the values are the wire values the API returns, storage class included.
 */
export async function mirrorImage(cloud: Cloud, lineageId: string): Promise<TableImage> {
  const out = new Map<string, Readonly<Record<string, unknown>>>();
  for (let page = 1; ; page++) {
    const r = await fetch(`${cloud.apiBase}/lineages/${lineageId}/mirror-rows?limit=500&page=${page}`, {
      headers: { authorization: `Bearer ${TEST_TOKEN}` },
    });
    if (r.status !== 200) throw new Error(`GET mirror-rows of ${lineageId}: ${r.status} ${await r.text()}`);
    const body = (await r.json()) as {
      items: { key: Record<string, unknown>; row: Record<string, unknown> }[];
    };
    for (const m of body.items) out.set(keyText(m.key), m.row);
    if (body.items.length < 500) return out;
  }
}

export async function readRejections(cloud: Cloud): Promise<Rejection[]> {
  const rows = await cloud.store.db
    .selectFrom('edge_rejections')
    .select(['code', 'payload_excerpt'])
    .execute();
  return rows.map((r) => ({
    code: r.code,
    batch_id: /"batch_id":"([^"]+)"/.exec(r.payload_excerpt ?? '')?.[1] ?? null,
  }));
}

export type ExtraLineage = Readonly<{
  table: string;
  lineage_id: string;
  writes: readonly Write[];
  device?: TableImage;
}>;

/**
 * Everything the checker needs. `final`: the system is quiet, so the read store is compared too
 * (mirror, staged rows, pending controls, counters); mid-fault only writes and events count.
 */
export async function observe(
  cloud: Cloud,
  device: Device,
  opts: { final: boolean; extra?: readonly ExtraLineage[] },
): Promise<Observation> {
  const writes = deviceWrites(device.app);
  const pending = devicePending(device.app);
  const lineages: LineageObservation[] = [];
  const readSide = async (table: string, id: string, image: TableImage | undefined) => {
    const events = await loadEvents(cloud, id);
    if (!opts.final) return { table, lineage_id: id, events };
    const staged = await cloud.store.db
      .selectFrom('edge_staged_rows')
      .select(['journal_epoch', 'commit_seq'])
      .where('lineage_id', '=', id)
      .execute();
    const controls = await cloud.store.db
      .selectFrom('edge_pending_controls')
      .select('control_id')
      .where('lineage_id', '=', id)
      .where('status', '=', 'pending')
      .execute();
    const c = await cloud.store.db
      .selectFrom('edge_table_lineages')
      .select(['staged_rows', 'materialized_rows', 'last_commit_seq'])
      .where('lineage_id', '=', id)
      .executeTakeFirst();
    return {
      table,
      lineage_id: id,
      events,
      mirror: await mirrorImage(cloud, id),
      ...(image ? { device: image } : {}),
      staged: staged.map((s) => [s.journal_epoch, Number(s.commit_seq)] as const),
      pending_controls: controls.map((x) => x.control_id),
      ...(c
        ? {
            counters: {
              staged_rows: Number(c.staged_rows),
              materialized_rows: Number(c.materialized_rows),
              last_commit_seq: c.last_commit_seq === null ? null : Number(c.last_commit_seq),
            },
          }
        : {}),
    };
  };
  for (const t of TABLE_NAMES) {
    const id = await lineageIdOf(cloud, device.name, t);
    lineages.push(await readSide(t, id, opts.final ? deviceImage(device.app, t as TableName) : undefined));
  }
  for (const x of opts.extra ?? []) lineages.push(await readSide(x.table, x.lineage_id, x.device));
  const rejections = opts.final ? await readRejections(cloud) : [];
  return {
    writes: [...writes, ...(opts.extra ?? []).flatMap((x) => x.writes)],
    device_pending: pending,
    rejections,
    lineages,
  };
}

/** The read store's schema exists once a projector migrated it. */
export async function storeReady(cloud: Cloud): Promise<boolean> {
  await sql`SELECT 1 FROM projection_checkpoints`.execute(cloud.store.db);
  return true;
}
