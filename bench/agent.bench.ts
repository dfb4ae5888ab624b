/**
 * sluice-agent benchmarks (not a test):
 *   node --import tsx bench/agent.bench.ts
 * 1. Capture overhead: the application's write rate with capture triggers on vs off (ratio).
 * 2. Publish throughput: rows/s from a pre-filled journal to a receipting cloud, per broker.
 * BENCH_ROWS (default 100000) sets the publish backlog.
 */
import { join } from 'node:path';
import { reconcile } from '../edge-agent/capture/install';
import { silentLogger } from '../edge-agent/log';
import { startAgent } from '../edge-agent/main';
import { FakeCloud } from '../edge-agent/testing/fake-cloud';
import { createAppDb, writeTestConfig } from '../edge-agent/testing/fixtures';
import { startMosquitto } from '../tests/support/mosquitto';
import { startNats } from '../tests/support/nats';
import { tempDir } from '../tests/support/proc';
import { waitFor } from '../tests/support/wait';
import { uuidv7 } from 'uuidv7';

function writeRate(capture: boolean, rowsPerTx: number, total: number): number {
  const dir = tempDir('bench');
  const db = createAppDb(join(dir, 'app.db'));
  if (capture) reconcile(db, { strategyOf: () => 'rows', snapshotOnFirstRun: false, newEpoch: uuidv7 });
  const ins = db.prepare('INSERT INTO device_state (mode, setpoint, updated_at) VALUES (?, ?, ?)');
  const tx = db.transaction((n: number) => {
    for (let i = 0; i < n; i++) ins.run('cooling', i * 0.5, '2026-04-28T09:00:00Z');
  });
  const t0 = process.hrtime.bigint();
  for (let done = 0; done < total; done += rowsPerTx) tx(rowsPerTx);
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  db.close();
  return total / s;
}

async function publishRate(name: string, url: string, rows: number): Promise<number> {
  const dir = tempDir('bench');
  const app = createAppDb(join(dir, 'app.db'));
  reconcile(app, { strategyOf: () => 'rows', snapshotOnFirstRun: false, newEpoch: uuidv7 });
  const ins = app.prepare('INSERT INTO device_state (mode, setpoint, updated_at) VALUES (?, ?, ?)');
  app.transaction(() => {
    for (let i = 0; i < rows; i++) ins.run('cooling', i * 0.5, '2026-04-28T09:00:00Z');
  })();
  const cloud = await FakeCloud.connect(url);
  const { config } = writeTestConfig({
    dir,
    serverUrl: url,
    deviceId: `bench-${name}`,
    sourceDb: join(dir, 'app.db'),
  });
  const t0 = Date.now();
  const agent = await startAgent(config, { logger: silentLogger() });
  await waitFor(() => agent.stats().confirmedRows >= rows, { timeoutMs: 300_000, intervalMs: 20 });
  const s = (Date.now() - t0) / 1000;
  await agent.stop();
  await cloud.close();
  app.close();
  return rows / s;
}

async function main(): Promise<void> {
  const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
  console.log('capture overhead (WAL, synchronous=NORMAL, device_state inserts)');
  for (const [perTx, total] of [
    [1, 30_000],
    [100, 200_000],
  ] as const) {
    writeRate(false, perTx, 5_000); // warm-up
    const off = writeRate(false, perTx, total);
    const on = writeRate(true, perTx, total);
    console.log(
      `  ${perTx} row(s)/transaction: off ${fmt(off)} rows/s, on ${fmt(on)} rows/s, ratio ${(on / off).toFixed(2)}`,
    );
  }
  const rows = Number(process.env.BENCH_ROWS ?? 100_000);
  console.log(`publish throughput (${fmt(rows)} journaled rows, receipt mode, 4096-row batches, window 4)`);
  const nats = await startNats();
  const mosq = await startMosquitto();
  try {
    console.log(`  NATS MQTT listener: ${fmt(await publishRate('nats', nats.mqttUrl, rows))} rows/s`);
    console.log(`  Mosquitto:          ${fmt(await publishRate('mosq', mosq.url, rows))} rows/s`);
  } finally {
    await nats.stop();
    await mosq.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
