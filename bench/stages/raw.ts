/**
 * Raw baselines: what each component the pipeline stands on does alone with the same rows and
 * bytes. PostgreSQL bulk upsert, JetStream publish, MQTT QoS 1 publish → subscribe on both
 * brokers, and the application's SQLite writes without capture.
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { jetstream, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import mqtt from 'mqtt';
import pg from 'pg';
import { uuidv7 } from 'uuidv7';
import { reconcile } from '../../edge-agent/capture/install';
import { tempDir } from '../../tests/support/proc';
import type { Ctx, StageResult } from '../lib/context';
import { type Item, ITEMS_DDL, items, rowsPerBatch, wireBatches } from '../lib/data';
import { measure, type Run, seconds, windowed } from '../lib/measure';

export const MIRROR_LIKE_DDL = (t: string) =>
  `CREATE TABLE ${t} (id bigint PRIMARY KEY, body text COLLATE "C" NOT NULL, n bigint,
     device_id text COLLATE "C" NOT NULL, source_commit_seq bigint NOT NULL,
     source_journal_epoch text COLLATE "C" NOT NULL, source_epoch_ordinal bigint NOT NULL)`;

/** The same statement a careful hand-written loader would use: one per batch, keys deduped. */
export const UPSERT_SQL = (t: string) =>
  `INSERT INTO ${t} (id, body, n, device_id, source_commit_seq, source_journal_epoch, source_epoch_ordinal)
   SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::text[], $7::bigint[])
   ON CONFLICT (id) DO UPDATE SET body = excluded.body, n = excluded.n, device_id = excluded.device_id,
     source_commit_seq = excluded.source_commit_seq, source_journal_epoch = excluded.source_journal_epoch,
     source_epoch_ordinal = excluded.source_epoch_ordinal
   WHERE ${t}.source_commit_seq < excluded.source_commit_seq`;

/** The last change per key in the batch (ON CONFLICT cannot touch a key twice in one statement). */
export function upsertParams(
  rows: readonly { id: number; body: string; n: number; seq: number }[],
  device: string,
  epoch: string,
) {
  const last = new Map<number, (typeof rows)[number]>();
  for (const r of rows) last.set(r.id, r);
  const v = [...last.values()];
  return [
    v.map((r) => r.id),
    v.map((r) => r.body),
    v.map((r) => r.n),
    v.map(() => device),
    v.map((r) => r.seq),
    v.map(() => epoch),
    v.map(() => 1),
  ];
}

export async function rawPostgres(ctx: Ctx, size: number): Promise<StageResult> {
  const url = await ctx.createDatabase(`raw_pg_${size}`);
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const rows = items(ctx.sizes.rawRows, size, ctx.sizes.keys);
  const per = rowsPerBatch(size);
  try {
    return await measure(
      ctx,
      {
        group: 'raw',
        stage: 'raw.postgres',
        label: 'PostgreSQL unnest upsert',
        row_bytes: size,
        note: `${per} rows/statement, keys deduped per statement`,
      },
      async (run) => {
        const t = `raw_${run}`;
        await c.query(MIRROR_LIKE_DDL(t));
        const sql = UPSERT_SQL(t);
        const epoch = uuidv7();
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < rows.length; i += per) {
          const part = rows.slice(i, i + per).map((r, j) => ({ ...r, seq: i + j + 1 }));
          await c.query(sql, upsertParams(part, 'bench-device', epoch));
        }
        return { rows: rows.length, seconds: seconds(t0) };
      },
    );
  } finally {
    await c.end();
  }
}

export async function rawJetStream(ctx: Ctx, size: number): Promise<StageResult> {
  const nc = await connect({ servers: ctx.nats.url });
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const name = `BENCH_RAW_${size}`;
  await jsm.streams.add({
    name,
    subjects: [`bench.raw.${size}.>`],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    duplicate_window: 120 * 1e9,
  });
  const batches = wireBatches(items(ctx.sizes.rawRows, size, ctx.sizes.keys), size, 'bench-device');
  try {
    return await measure(
      ctx,
      {
        group: 'raw',
        stage: 'raw.jetstream',
        label: 'JetStream publish (file)',
        row_bytes: size,
        latency_of: 'publish → ack',
        note: `${batches.length} batch-sized messages, 64 in flight, msg-id dedupe`,
      },
      async (run): Promise<Run> => {
        const lat: number[] = [];
        const t0 = process.hrtime.bigint();
        await windowed(batches, 64, async (b, i) => {
          const s = performance.now();
          await js.publish(`bench.raw.${size}.${run}`, b.body, { msgID: `${run}:${i}` });
          lat.push(performance.now() - s);
        });
        return { rows: ctx.sizes.rawRows, seconds: seconds(t0), latenciesMs: lat };
      },
    );
  } finally {
    await jsm.streams.delete(name).catch(() => undefined);
    await nc.close();
  }
}

/** QoS 1 publish → QoS 1 subscribe of the batch payloads through one broker. */
export async function rawMqtt(ctx: Ctx, broker: 'nats' | 'mosquitto', size: number): Promise<StageResult> {
  const url = broker === 'nats' ? ctx.nats.mqttUrl : ctx.mosq.url;
  const batches = wireBatches(items(ctx.sizes.rawRows, size, ctx.sizes.keys), size, 'bench-device');
  const tag = uuidv7().slice(-8);
  const sub = await mqtt.connectAsync(url, { clientId: `bench-sub-${tag}`, protocolVersion: 4, clean: true });
  const pub = await mqtt.connectAsync(url, { clientId: `bench-pub-${tag}`, protocolVersion: 4, clean: true });
  let received = 0;
  let onCount: (() => void) | undefined;
  const arrived: number[] = [];
  sub.on('message', () => {
    arrived.push(performance.now());
    received++;
    onCount?.();
  });
  try {
    return await measure(
      ctx,
      {
        group: 'raw',
        stage: `raw.mqtt.${broker}`,
        label: broker === 'nats' ? 'MQTT QoS 1 pub→sub, NATS listener' : 'MQTT QoS 1 pub→sub, Mosquitto',
        row_bytes: size,
        latency_of: 'publish → delivered',
        note: `${batches.length} batch-sized messages, 64 in flight`,
      },
      async (run): Promise<Run> => {
        const topic = `bench/raw-${tag}/r${run}`;
        await sub.subscribeAsync(topic, { qos: 1 });
        received = 0;
        arrived.length = 0;
        const sent: number[] = [];
        const all = new Promise<void>((resolve) => {
          onCount = () => {
            if (received >= batches.length) resolve();
          };
        });
        const t0 = process.hrtime.bigint();
        await windowed(batches, 64, (b, i) => {
          sent[i] = performance.now();
          return pub.publishAsync(topic, b.body, { qos: 1 });
        });
        await withTimeout(all, 120_000, `${broker}: ${received}/${batches.length} messages delivered`);
        const s = seconds(t0);
        await sub.unsubscribeAsync(topic);
        // One publisher, one topic, QoS 1: delivered in the order sent.
        return { rows: ctx.sizes.rawRows, seconds: s, latenciesMs: arrived.map((a, i) => a - sent[i]!) };
      },
    );
  } finally {
    await Promise.all([sub.endAsync(), pub.endAsync()]);
  }
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

export const UPSERT_ITEM =
  'INSERT INTO items (id, body, n) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET body = excluded.body, n = excluded.n';

/** The application's database: WAL, the profile's synchronous, the `items` table. */
export function openAppDb(path: string, sync: 'NORMAL' | 'FULL'): Database.Database {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${sync}`);
  db.pragma('busy_timeout = 10000');
  db.exec(ITEMS_DDL);
  return db;
}

/** Upsert `rows` into the application's table, `perTx` rows per transaction. */
export function appWriter(db: Database.Database): (rows: readonly Item[], perTx: number) => void {
  const ins = db.prepare(UPSERT_ITEM);
  const tx = db.transaction((part: readonly Item[]) => {
    for (const r of part) ins.run(r.id, r.body, r.n);
  });
  return (rows, perTx) => {
    for (let i = 0; i < rows.length; i += perTx) tx(rows.slice(i, i + perTx));
  };
}

/** The application's write rate, with the agent's capture triggers installed or not. */
export async function sqliteWrites(
  ctx: Ctx,
  size: number,
  perTx: number,
  capture: boolean,
): Promise<StageResult> {
  const total = perTx === 1 ? ctx.sizes.captureRows1 : ctx.sizes.captureRows100;
  const rows = items(total, size, ctx.sizes.keys);
  return measure(
    ctx,
    {
      group: capture ? 'edge' : 'raw',
      stage: `${capture ? 'edge.capture' : 'raw.sqlite'}.tx${perTx}`,
      label: `SQLite app writes, ${perTx} row${perTx > 1 ? 's' : ''}/tx, capture ${capture ? 'on' : 'off'}`,
      row_bytes: size,
      note: `WAL, synchronous=${ctx.sqliteSync}, zipf upserts`,
    },
    async () => {
      const db = openAppDb(join(tempDir('bench-app'), 'app.db'), ctx.sqliteSync);
      if (capture) reconcile(db, { strategyOf: () => 'rows', snapshotOnFirstRun: false, newEpoch: uuidv7 });
      const write = appWriter(db);
      write(rows.slice(0, Math.min(1000, rows.length)), perTx); // warm the statement cache and pages
      const t0 = process.hrtime.bigint();
      write(rows, perTx);
      const s = seconds(t0);
      db.close();
      return { rows: total, seconds: s };
    },
  );
}
