/**
 * Upload-flow benchmark: a large table bootstrapped through the secondary upload flow by the real
 * agent and `sluice all` (bridge, worker, projector, API) on a private nats-server, with the peak
 * resident memory (VmHWM) of the agent and of the cloud process. Flat memory means both stay far
 * below the size of the table.
 *
 *   node --import ./node_modules/tsx/dist/loader.mjs bench/upload.bench.ts [--mb 200] [--out FILE]
 */
import Database from 'better-sqlite3';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startNats } from '../tests/support/nats';
import { tempDir } from '../tests/support/proc';
import { getJson, postJson, startAgentProcess, startCloudProcess } from '../tests/support/stack';
import { waitFor } from '../tests/support/wait';

const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const TARGET_MB = Number(arg('--mb') ?? 200);
const ROW_BYTES = 140; // bytes per row in the SQLite file, about (the JSONL line is ~200)
const ROWS = Math.round((TARGET_MB * 1024 * 1024) / ROW_BYTES);
const LONG = 30 * 60_000;

function hwm(pid: number | undefined): number {
  if (!pid) return NaN;
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Deterministic, poorly compressible text (zstd would make light work of repeated filler). */
function text(seed: number, len: number): string {
  let x = seed * 2654435761;
  let s = '';
  while (s.length < len) {
    x = (x * 1103515245 + 12345) >>> 0;
    s += x.toString(36);
  }
  return s.slice(0, len);
}

async function main(): Promise<void> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const nats = await startNats();
  const cloud = await startCloudProcess({
    natsUrl: nats.url,
    mqttUrl: nats.mqttUrl,
    env: {
      SLUICE_CONTROL_SIGNING_KEY: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      SLUICE_LOG_LEVEL: 'info',
    },
  });
  const dir = tempDir('upload-bench');
  const dbPath = join(dir, 'app.db');
  const db = new Database(dbPath);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty REAL, note TEXT)');
  const insert = db.prepare('INSERT INTO items (id, name, qty, note) VALUES (?, ?, ?, ?)');
  db.transaction(() => {
    for (let i = 1; i <= ROWS; i++) insert.run(i, text(i, 96), i / 8, text(i + 7, 24));
  })();
  db.pragma('wal_checkpoint(TRUNCATE)');
  const tableMb = statSync(dbPath).size / 1024 / 1024;
  console.log(`table: ${ROWS} rows, database file ${tableMb.toFixed(0)} MB`);

  const t0 = Date.now();
  const agent = startAgentProcess({
    mqttUrl: nats.mqttUrl,
    sourceDb: dbPath,
    device: 'gw-bench',
    dir,
    flushInterval: '1s',
    extraYaml: [
      '  snapshot_on_first_run: true',
      'security:',
      '  signed_control:',
      '    enabled: true',
      `    public_key: ${JSON.stringify(publicKey.export({ type: 'spki', format: 'pem' }).toString())}`,
    ].join('\n'),
  });
  const logs = () => `cloud: ${cloud.output().slice(-2000)}\nagent: ${agent.output().slice(-2000)}`;
  let agentPeak = 0;
  let cloudPeak = 0;
  const sampler = setInterval(() => {
    agentPeak = Math.max(agentPeak, hwm(agent.child.pid));
    cloudPeak = Math.max(cloudPeak, hwm(cloud.child.pid));
  }, 500);

  const put = await waitFor(() => /"event":"upload_put"[^\n]*/.exec(agent.output())?.[0], {
    timeoutMs: LONG,
    intervalMs: 500,
    message: () => `the agent's PUT (${logs()})`,
  });
  const tPut = Date.now();
  console.log(`PUT done after ${(tPut - t0) / 1000} s`);
  const started = /"event":"upload_started"[^\n]*"bytes":(\d+)/.exec(agent.output());
  const uploadBytes = started ? Number(started[1]) : NaN;
  await waitFor(() => /"via":"upload"/.test(agent.output()), {
    timeoutMs: LONG,
    intervalMs: 500,
    message: 'the finalize receipt',
  });
  const lineageId = await waitFor(
    async () =>
      (
        await getJson<{ items: { lineage_id: string; source_table: string }[] }>(
          `${cloud.base}/lineages?device_id=gw-bench`,
        )
      ).body.items.find((l) => l.source_table === 'items')?.lineage_id,
    { timeoutMs: LONG, intervalMs: 500, message: 'the lineage' },
  );
  // Every row in the lineage: the worker logs the upload it took in (with its chunks).
  const taken = await waitFor(() => /[^\n]*"msg":"upload taken in"/.exec(cloud.output())?.[0], {
    timeoutMs: LONG,
    intervalMs: 1000,
    message: () => `the upload taken in (${logs()})`,
  });
  const completed = { chunks: Number(/"chunks":(\d+)/.exec(taken)?.[1]) };
  const tTaken = Date.now();
  console.log(`rows in the lineage after ${(tTaken - t0) / 1000} s`);
  const memTaken = {
    agent: Math.max(agentPeak, hwm(agent.child.pid)),
    cloud: Math.max(cloudPeak, hwm(cloud.child.pid)),
  };

  // Approve: the staged snapshot replays into the mirror.
  const review = (
    await getJson<{ items: { review_id: string }[] }>(
      `${cloud.base}/schema-reviews?status=queued&lineage_id=${lineageId}`,
    )
  ).body.items[0]!;
  await postJson(`${cloud.base}/schema-reviews/${review.review_id}/claim`, { action_version: 1 });
  await postJson(`${cloud.base}/schema-reviews/${review.review_id}/approve`, { action_version: 2 });
  await waitFor(
    async () =>
      (await getJson<{ total: number }>(`${cloud.base}/lineages/${lineageId}/mirror-rows?limit=1`)).body
        .total === ROWS || undefined,
    { timeoutMs: LONG, intervalMs: 2000, message: () => `mirror with ${ROWS} rows (${logs()})` },
  );
  const tMirror = Date.now();
  clearInterval(sampler);
  agentPeak = Math.max(agentPeak, hwm(agent.child.pid));
  cloudPeak = Math.max(cloudPeak, hwm(cloud.child.pid));

  const result = {
    rows: ROWS,
    table_file_mb: Math.round(tableMb),
    upload_jsonl_mb: Math.round(uploadBytes / 1024 / 1024),
    put_line: put.slice(0, 200),
    seconds: {
      start_to_put_done: (tPut - t0) / 1000,
      start_to_rows_in_lineage: (tTaken - t0) / 1000,
      start_to_mirror_full: (tMirror - t0) / 1000,
    },
    chunks: completed.chunks,
    peak_rss_mb_until_rows_in_lineage: {
      agent: Math.round(memTaken.agent),
      cloud: Math.round(memTaken.cloud),
    },
    peak_rss_mb_until_mirror_full: { agent: Math.round(agentPeak), cloud: Math.round(cloudPeak) },
    load_average: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
  };
  console.log(JSON.stringify(result, null, 2));
  const out = arg('--out');
  if (out) writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  db.close();
  await agent.stop();
  await cloud.stop();
  await nats.stop();
  rmSync(dir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
