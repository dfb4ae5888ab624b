/**
 * Exact replication, end to end (issue 18, "Must show"): two applications on two SQLites — one on
 * better-sqlite3 (its bundled SQLite), one on python3's sqlite3 (the system's SQLite, Debian 12:
 * 3.40.1), with a DDL step through Debian's `sqlite3` shell — write 20,000 seeded random changes
 * over every value class (17-digit and integral REALs, ±Infinity, -0.0 in an untyped column,
 * 64-bit integers, empty and non-empty BLOBs, unicode TEXT, NULL) into three tables (a composite
 * key, a WITHOUT ROWID table, an INTEGER PRIMARY KEY; key-changing updates in all three), with
 * `ADD COLUMN … DEFAULT`, `DROP COLUMN` and `RENAME COLUMN` mid-stream (agent running or
 * stopped) and the agent killed -9 between steps. Reviews are approved as they come, the binding
 * `i → i64` kept through every approval. At the end the mirror equals the device in every value
 * and storage class on the SQLite read store and, rebuilt from the same streams, on PostgreSQL;
 * `verify` reports equal on both.
 *
 * Then `verify` finds and repairs: a mirror row corrupted directly in the read store is reported
 * divergent with its bucket, the repair resync runs, and verify reports equal again.
 *
 * Knobs: SLUICE_SEED (the seed, printed), SLUICE_EXACT_CHANGES (default 20000).
 */
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { sql } from 'kysely';
import { bucketOf, type SqliteValue } from '../../domain/protocol/wire-values';
import type { WireValue } from '../../domain/protocol/contracts';
import { parseReadStore } from '../../infra/config/env';
import { openReadStore, type ReadStore } from '../../projections';
import {
  type AppWriter,
  betterSqliteWriter,
  deviceWireImage,
  diffImages,
  lineageEvents,
  type MirrorPage,
  mirrorWireImage,
  pythonWriter,
  verifyLineage,
  type WireImage,
} from '../support/exact';
import { startNats, type NatsServer } from '../support/nats';
import { createTestDatabase, type TestDatabase } from '../support/postgres';
import { rng } from '../support/prng';
import { type Managed, tempDir } from '../support/proc';
import type { PyStep } from '../support/pyapp';
import {
  findLineage,
  projectionsCaughtUp,
  type RoleEnv,
  seedFromEnv,
  shutdown,
  startRole,
  waitReady,
} from '../support/readside';
import { sqliteCli, sqliteCliVersion } from '../support/sqlite-cli';
import {
  type AgentProcess,
  type CloudProcess,
  getJson,
  postJson,
  startAgentProcess,
  startCloudProcess,
} from '../support/stack';
import {
  orNull,
  randomBlob,
  randomInteger,
  randomReal,
  randomText,
  randomValue,
} from '../support/value-classes';
import { waitFor } from '../support/wait';

const SEED = seedFromEnv();
const CHANGES = Number(process.env.SLUICE_EXACT_CHANGES ?? 20_000);
const PHASES = 4;
const OPS_PER_TX = 100;

// ------------------------------------------------------------------ the application's schema

/** What DDL has happened so far (the same on both devices). */
type Schema = { grade: boolean; extra: boolean; legacy: boolean; noteName: 'note' | 'remark' };
const INITIAL: Schema = { grade: false, extra: false, legacy: true, noteName: 'note' };

const DDL = [
  'CREATE TABLE items (site TEXT NOT NULL, n INTEGER NOT NULL, v, r REAL, i INTEGER, t TEXT, b BLOB, note TEXT, legacy TEXT, PRIMARY KEY (site, n))',
  'CREATE TABLE kv (k TEXT NOT NULL, part INTEGER NOT NULL, v, b BLOB, PRIMARY KEY (k, part)) WITHOUT ROWID',
  'CREATE TABLE plain (id INTEGER PRIMARY KEY, v, r REAL, t TEXT)',
];
const TABLES = ['items', 'kv', 'plain'] as const;
type Table = (typeof TABLES)[number];
const KEYS: Record<Table, readonly string[]> = { items: ['site', 'n'], kv: ['k', 'part'], plain: ['id'] };

/** The approved bindings, kept through every approval: `i` is mirrored as `i64`. */
const ACTIONS: Record<Table, readonly { column: string; action: string; mirror_column_name?: string }[]> = {
  items: [{ column: 'i', action: 'mirror', mirror_column_name: 'i64' }],
  kv: [],
  plain: [],
};

/** Source column → mirror column of each table under `s` (every column is bound). */
function bindings(table: Table, s: Schema): Record<string, string> {
  const cols: Record<Table, string[]> = {
    items: [
      'site',
      'n',
      'v',
      'r',
      'i',
      't',
      'b',
      s.noteName,
      ...(s.legacy ? ['legacy'] : []),
      ...(s.grade ? ['grade'] : []),
    ],
    kv: ['k', 'part', 'v', 'b'],
    plain: ['id', 'v', 'r', 't', ...(s.extra ? ['extra'] : [])],
  };
  const renamed = new Map(ACTIONS[table].map((a) => [a.column, a.mirror_column_name ?? a.column]));
  return Object.fromEntries(cols[table].map((c) => [c, renamed.get(c) ?? c]));
}

// Keys: unicode sites, 64-bit and negative integers beside small ones.
const SITES = ['north', 'süd', '東京'];
const NS: bigint[] = [
  ...Array.from({ length: 120 }, (_, i) => BigInt(i + 1)),
  9007199254740993n,
  9223372036854775807n,
  -9223372036854775808n,
  -1n,
  0n,
];
const KV_KEYS = ['a', 'b', 'ключ', '🔑', "o'clock", ''];

const pick = <T>(xs: readonly T[], random: () => number): T => xs[Math.floor(random() * xs.length)]!;

/** One change of one table under the current schema (upsert, update, delete or key change). */
function change(random: () => number, s: Schema): PyStep {
  const t = random();
  const op = random();
  if (t < 0.5) {
    const site = pick(SITES, random);
    const n = pick(NS, random);
    if (op < 0.5) {
      const cols = [
        'site',
        'n',
        'v',
        'r',
        'i',
        't',
        'b',
        s.noteName,
        ...(s.legacy ? ['legacy'] : []),
        ...(s.grade ? ['grade'] : []),
      ];
      const values: SqliteValue[] = [
        site,
        n,
        randomValue(random),
        orNull(random, () => randomReal(random)),
        orNull(random, () => randomInteger(random)),
        orNull(random, () => randomText(random)),
        orNull(random, () => randomBlob(random)),
        orNull(random, () => randomText(random)),
        ...(s.legacy ? [orNull(random, () => randomText(random))] : []),
        ...(s.grade ? [pick(['A', 'B', 'C'], random)] : []),
      ];
      const set = cols.slice(2).map((c) => `"${c}" = excluded."${c}"`);
      return {
        sql: `INSERT INTO items (${cols.map((c) => `"${c}"`).join(', ')}) VALUES (${cols.map(() => '?').join(', ')}) ON CONFLICT (site, n) DO UPDATE SET ${set.join(', ')}`,
        params: values,
      };
    }
    if (op < 0.75)
      return {
        sql: 'UPDATE items SET v = ?, r = ? WHERE site = ? AND n = ?',
        params: [randomValue(random), randomReal(random), site, n],
      };
    if (op < 0.9) return { sql: 'DELETE FROM items WHERE site = ? AND n = ?', params: [site, n] };
    return {
      sql: 'UPDATE OR IGNORE items SET n = ? WHERE site = ? AND n = ?',
      params: [pick(NS, random), site, n],
    };
  }
  if (t < 0.75) {
    const k = pick(KV_KEYS, random);
    const part = BigInt(Math.floor(random() * 40));
    if (op < 0.6)
      return {
        sql: 'INSERT INTO kv (k, part, v, b) VALUES (?, ?, ?, ?) ON CONFLICT (k, part) DO UPDATE SET v = excluded.v, b = excluded.b',
        params: [k, part, randomValue(random), orNull(random, () => randomBlob(random))],
      };
    if (op < 0.85) return { sql: 'DELETE FROM kv WHERE k = ? AND part = ?', params: [k, part] };
    return {
      sql: 'UPDATE OR IGNORE kv SET part = ? WHERE k = ? AND part = ?',
      params: [BigInt(Math.floor(random() * 40)), k, part],
    };
  }
  const id = BigInt(1 + Math.floor(random() * 300));
  if (op < 0.6) {
    const cols = ['id', 'v', 'r', 't', ...(s.extra ? ['extra'] : [])];
    return {
      sql: `INSERT INTO plain (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')}) ON CONFLICT (id) DO UPDATE SET ${cols
        .slice(1)
        .map((c) => `${c} = excluded.${c}`)
        .join(', ')}`,
      params: [
        id,
        randomValue(random),
        orNull(random, () => randomReal(random)),
        orNull(random, () => randomText(random)),
        ...(s.extra ? [randomReal(random)] : []),
      ],
    };
  }
  if (op < 0.85) return { sql: 'DELETE FROM plain WHERE id = ?', params: [id] };
  return {
    sql: 'UPDATE OR IGNORE plain SET id = ? WHERE id = ?',
    params: [BigInt(1 + Math.floor(random() * 300)), id],
  };
}

/** Write at least `changes` changed rows, in transactions of OPS_PER_TX statements. */
async function writeChanges(
  app: AppWriter,
  random: () => number,
  s: Schema,
  changes: number,
): Promise<number> {
  let done = 0;
  while (done < changes) done += await app.tx(Array.from({ length: OPS_PER_TX }, () => change(random, s)));
  return done;
}

// ------------------------------------------------------------------ the devices

type Dev = {
  name: string;
  dir: string;
  db: string;
  app: AppWriter;
  agent: AgentProcess | undefined;
  random: () => number;
  written: number;
};

// ------------------------------------------------------------------ the test

describe('exact replication (two SQLites, schema changes, agent kill -9, SQLite and PostgreSQL read stores)', () => {
  let nats: NatsServer | undefined;
  let nc: NatsConnection | undefined;
  let pgDb: TestDatabase | undefined;
  let pgStore: ReadStore | undefined;
  let api: CloudProcess | undefined;
  let mqttUrl = '';
  const roles: Partial<Record<'bridge' | 'worker' | 'projector', Managed>> = {};
  const devices: Dev[] = [];
  let schema: Schema = INITIAL;
  const lineages = new Map<string, string>(); // `${device}/${table}` → lineage id
  const approvals: string[] = [];
  let approverErrors: Error[] = [];
  let stopApprover: (() => Promise<void>) | undefined;
  let mainPassed = false;

  const lineageOf = (d: Dev, t: Table) => lineages.get(`${d.name}/${t}`)!;

  const startAgent = (d: Dev) => {
    d.agent = startAgentProcess({
      mqttUrl,
      sourceDb: d.db,
      device: d.name,
      slug: 'exact',
      flushInterval: '100ms',
      dir: d.dir,
    });
  };
  const waitAgentStarted = (d: Dev) =>
    waitFor(
      () => {
        if (d.agent!.child.exitCode !== null)
          throw new Error(`the agent of ${d.name} exited: ${d.agent!.output().slice(-3000)}`);
        return d.agent!.output().includes('sluice-agent started');
      },
      { timeoutMs: 60_000, message: `the agent of ${d.name} started` },
    );
  const killAgents = async () => {
    for (const d of devices) await d.agent?.kill();
  };
  const restartAgents = async () => {
    for (const d of devices) startAgent(d);
    for (const d of devices) await waitAgentStarted(d);
  };

  /** Approves every queued review of the project as it comes, with the table's kept bindings. */
  const approver = () => {
    let on = true;
    const loop = (async () => {
      while (on) {
        try {
          const r = await getJson<{
            items: {
              review_id: string;
              source_table: string;
              action_version: number;
              classification: string;
              lineage_id: string;
            }[];
          }>(`${api!.base}/schema-reviews?status=queued&limit=100`);
          for (const rv of r.body.items ?? []) {
            const table = rv.source_table as Table;
            const claim = await postJson(`${api!.base}/schema-reviews/${rv.review_id}/claim`, {
              action_version: rv.action_version,
            });
            // The list is the read store's: a review this loop approved a moment ago can still be
            // listed as queued. The command side answers with its real status; that is not an error.
            const decided = (claim.body as { details?: { status?: string } }).details?.status;
            if (claim.status === 409 && decided !== undefined && decided !== 'queued') continue;
            if (claim.status !== 200)
              throw new Error(
                `claim ${table} review ${rv.review_id}: ${claim.status} ${JSON.stringify(claim.body)}`,
              );
            const ok = await postJson(`${api!.base}/schema-reviews/${rv.review_id}/approve`, {
              action_version: rv.action_version + 1,
              ...(ACTIONS[table]?.length ? { column_actions: ACTIONS[table] } : {}),
            });
            if (ok.status !== 200)
              throw new Error(
                `approve ${table} review ${rv.review_id}: ${ok.status} ${JSON.stringify(ok.body)}`,
              );
            approvals.push(`${table} ${rv.classification}`);
          }
        } catch (err) {
          approverErrors.push(err as Error);
          if (approverErrors.length > 20) approverErrors = approverErrors.slice(-20);
        }
        await new Promise((res) => setTimeout(res, 250));
      }
    })();
    return async () => {
      on = false;
      await loop;
    };
  };

  /** Mirror against device for every lineage; every difference, one line each. */
  const differences = async (): Promise<string[]> => {
    const out: string[] = [];
    for (const d of devices)
      for (const t of TABLES) {
        const b = bindings(t, schema);
        const device = deviceWireImage(
          d.db,
          t,
          KEYS[t].map((k) => b[k]!),
          b,
        );
        const mirror: WireImage = await mirrorWireImage(
          api!.base,
          lineageOf(d, t),
          KEYS[t].map((k) => b[k]!),
          Object.values(b),
        );
        out.push(...diffImages(`${d.name}/${t}`, device, mirror));
      }
    return out;
  };

  /** Wait until the mirror equals the device; on the deadline, fail with the differences. */
  const converge = async (timeoutMs: number, what: string): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    let last: string[] = ['not compared yet'];
    while (Date.now() < deadline) {
      last = await differences().catch((err: Error) => [`(compare failed: ${err.message})`]);
      if (last.length === 0) return;
      await new Promise((res) => setTimeout(res, 500));
    }
    const agents = devices.map((d) => `--- agent ${d.name}\n${d.agent?.output().slice(-3000)}`).join('\n');
    throw new Error(
      `${what}: the mirror still differs from the device after ${timeoutMs} ms (seed ${SEED}); ${last.length} difference(s):\n` +
        `${last.slice(0, 40).join('\n')}\napprovals: ${approvals.join(', ')}\napprover errors: ${approverErrors.map((e) => e.message).join(' | ')}\n${agents}`,
    );
  };

  const verifyAll = async (store: string) => {
    const outcomes: string[] = [];
    for (const d of devices)
      for (const t of TABLES) {
        const v = await verifyLineage(nc!, api!.base, lineageOf(d, t));
        outcomes.push(
          `${store} ${d.name}/${t}: ${v.outcome}${v.divergent_buckets.length ? ` ${JSON.stringify(v.divergent_buckets)}` : ''} (${v.device_rows}/${v.mirror_rows} rows)${v.detail ? ` ${v.detail}` : ''}`,
        );
      }
    return outcomes;
  };

  afterAll(async () => {
    await stopApprover?.().catch(() => undefined);
    for (const d of devices) {
      await shutdown(d.agent);
      await d.app.close().catch(() => undefined);
    }
    await Promise.all([shutdown(api), shutdown(roles.projector), shutdown(roles.worker)]);
    await shutdown(roles.bridge);
    await pgStore?.close().catch(() => undefined);
    await nc?.close();
    await nats?.stop();
    await pgDb?.drop();
  });

  it(`${CHANGES} changes over every value class mirror exactly, on SQLite and PostgreSQL, and verify says equal`, async () => {
    console.log(
      `[exact] seed ${SEED} (rerun: SLUICE_SEED=${SEED}), ${CHANGES} changes, python3 sqlite3 and sqlite3 shell ${sqliteCliVersion()}`,
    );
    const t0 = Date.now();
    nats = await startNats();
    mqttUrl = nats.mqttUrl;
    const sqliteUrl = `sqlite:${join(tempDir('exact-store'), 'read.db')}`;
    const env: RoleEnv = { natsUrl: nats.url, mqttUrl, readStore: sqliteUrl };
    roles.bridge = startRole('bridge', env);
    roles.worker = startRole('worker', env);
    roles.projector = startRole('projector', env);
    await Promise.all([
      waitReady(roles.bridge, 'bridge'),
      waitReady(roles.worker, 'worker'),
      waitReady(roles.projector, 'projector'),
    ]);
    api = await startCloudProcess({ natsUrl: nats.url, mqttUrl, readStore: sqliteUrl, args: ['api'] });
    nc = await connect({ servers: nats.url });

    // Two devices, one per SQLite: the tables are created by the application itself.
    for (const [i, kind] of (['better-sqlite3', 'python3'] as const).entries()) {
      const dir = tempDir(`exact-${kind}`);
      const db = join(dir, 'app.db');
      const app = kind === 'python3' ? await pythonWriter(db) : betterSqliteWriter(db);
      for (const ddl of DDL) await app.ddl(ddl);
      devices.push({
        name: `exact-${kind === 'python3' ? 'py' : 'bs3'}`,
        dir,
        db,
        app,
        agent: undefined,
        random: rng(SEED + i),
        written: 0,
      });
    }
    await restartAgents();
    stopApprover = approver();

    const perPhase = Math.ceil(CHANGES / devices.length / PHASES);
    const write = async () => {
      for (const d of devices) d.written += await writeChanges(d.app, d.random, schema, perPhase);
    };
    const steps: string[] = [];
    const step = (what: string) => steps.push(`${what} +${Math.round((Date.now() - t0) / 100) / 10}s`);

    // Phase 1: plain writes, reviews approved as they come.
    await write();
    for (const d of devices)
      for (const t of TABLES)
        lineages.set(`${d.name}/${t}`, (await findLineage(api.base, d.name, t, 60_000)).lineage_id);
    step('phase 1');
    await killAgents();

    // Phase 2: ADD COLUMN … DEFAULT while the agent is down (existing rows gain 'C' and 2.5).
    for (const d of devices) {
      await d.app.ddl("ALTER TABLE items ADD COLUMN grade TEXT NOT NULL DEFAULT 'C'");
      await d.app.ddl('ALTER TABLE plain ADD COLUMN extra REAL DEFAULT 2.5');
    }
    schema = { ...schema, grade: true, extra: true };
    await restartAgents();
    await write();
    step('phase 2 (ADD COLUMN DEFAULT, agent stopped)');
    await killAgents();
    await restartAgents();

    // Phase 3: DROP COLUMN while the agent runs; on the python device through the sqlite3 shell.
    for (const d of devices) {
      if (d.app.kind === 'python3') sqliteCli(d.db, 'ALTER TABLE items DROP COLUMN legacy;');
      else await d.app.ddl('ALTER TABLE items DROP COLUMN legacy');
    }
    schema = { ...schema, legacy: false };
    await write();
    step('phase 3 (DROP COLUMN, agent running)');
    await killAgents();

    // Phase 4: RENAME COLUMN while the agent is down.
    for (const d of devices) await d.app.ddl('ALTER TABLE items RENAME COLUMN note TO remark');
    schema = { ...schema, noteName: 'remark' };
    await restartAgents();
    await write();
    step('phase 4 (RENAME COLUMN, agent stopped)');
    expect(devices.reduce((n, d) => n + d.written, 0)).toBeGreaterThanOrEqual(CHANGES);

    // SQLite read store: the mirror equals the device, value and class, and verify agrees.
    await converge(90_000, 'SQLite read store');
    step('SQLite read store equal');
    expect({ approverErrors: approverErrors.map((e) => e.message) }).toEqual({ approverErrors: [] });
    expect(await verifyAll('sqlite')).toEqual(
      devices.flatMap((d) =>
        TABLES.map((t) => expect.stringMatching(new RegExp(`^sqlite ${d.name}/${t}: equal `))),
      ),
    );
    step('SQLite verify equal');

    // PostgreSQL read store: the same streams projected again from the start.
    await stopApprover();
    stopApprover = undefined;
    await Promise.all([shutdown(roles.projector), shutdown(api)]);
    pgDb = await createTestDatabase('exact');
    const pgEnv: RoleEnv = { ...env, readStore: pgDb.url };
    roles.projector = startRole('projector', pgEnv);
    await waitReady(roles.projector, 'projector');
    api = await startCloudProcess({ natsUrl: nats.url, mqttUrl, readStore: pgDb.url, args: ['api'] });
    pgStore = openReadStore(parseReadStore(pgDb.url));
    await waitFor(() => projectionsCaughtUp(nc!, pgStore!), {
      timeoutMs: 60_000,
      intervalMs: 250,
      message: 'the PostgreSQL read store caught up',
    });
    await converge(30_000, 'PostgreSQL read store');
    expect(await verifyAll('postgres')).toEqual(
      devices.flatMap((d) =>
        TABLES.map((t) => expect.stringMatching(new RegExp(`^postgres ${d.name}/${t}: equal `))),
      ),
    );
    step('PostgreSQL equal, verify equal');
    console.log(`[exact] seed ${SEED}: ${steps.join('; ')}; approvals: ${approvals.join(', ')}`);
    mainPassed = true;
  }, 300_000);

  it('verify finds a mirror row corrupted in the read store, reports its bucket, repairs it, then reports equal', async () => {
    // Runs on the stack the first test left (PostgreSQL read store); without it there is nothing to corrupt.
    expect({ previousTestPassed: mainPassed }).toEqual({ previousTestPassed: true });
    const d = devices[0]!;
    const lineageId = lineageOf(d, 'items');
    const b = bindings('items', schema);
    const page = await getJson<MirrorPage>(`${api!.base}/lineages/${lineageId}/mirror-rows?limit=1`);
    expect(page.status).toBe(200);
    const table = page.body.table!;
    const tColumn = page.body.columns.find((c) => c.name === b.t)!.column;
    // One row whose TEXT column holds text: overwrite it, behind the projector's back.
    const q = (id: string) => sql.id(id);
    const hit = await sql<{
      n: number;
    }>`UPDATE ${q(table)} SET ${q(tColumn)} = ${'corrupted'} WHERE ctid = (SELECT ctid FROM ${q(table)} WHERE ${q(tColumn)} IS NOT NULL LIMIT 1)`.execute(
      pgStore!.db,
    );
    expect(Number(hit.numAffectedRows ?? 0n)).toBe(1);

    const device = deviceWireImage(
      d.db,
      'items',
      KEYS.items.map((k) => b[k]!),
      b,
    );
    const mirror = await mirrorWireImage(
      api!.base,
      lineageId,
      KEYS.items.map((k) => b[k]!),
      Object.values(b),
    );
    const diff = diffImages('items', device, mirror);
    expect(diff).toEqual([expect.stringMatching(/\.t: mirror text "corrupted" ≠ device text /)]);
    const corruptedKey = [...device.keys()].find((k) => (mirror.get(k)?.t as WireValue) === 'corrupted')!;
    const row = device.get(corruptedKey)!;
    const bucket = bucketOf({ site: row.site!, n: row.n! });

    const found = await verifyLineage(nc!, api!.base, lineageId);
    expect(found).toMatchObject({ outcome: 'divergent', divergent_buckets: [bucket] });
    expect(found.resync_id).toEqual(expect.any(String));
    // The repair: a resync of exactly that bucket, requested by the decider.
    const resync = await waitFor(
      async () =>
        (await lineageEvents(nc!, lineageId)).find(
          (e) => e.type === 'ResyncRequested' && e.data.resync_id === found.resync_id,
        ),
      { timeoutMs: 15_000, intervalMs: 250, message: 'the repair resync requested' },
    );
    expect(resync.type === 'ResyncRequested' && resync.data).toMatchObject({
      reason: 'verify_repair',
      buckets: [bucket],
    });
    await waitFor(
      async () => {
        const m = await mirrorWireImage(
          api!.base,
          lineageId,
          KEYS.items.map((k) => b[k]!),
          Object.values(b),
        );
        return diffImages('items', device, m).length === 0;
      },
      { timeoutMs: 60_000, intervalMs: 500, message: 'the resync repaired the corrupted row' },
    );
    const again = await verifyLineage(nc!, api!.base, lineageId);
    expect(again).toMatchObject({ outcome: 'equal', divergent_buckets: [] });
  }, 120_000);
});
