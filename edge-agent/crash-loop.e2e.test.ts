import Database from 'better-sqlite3';
import { join, resolve } from 'node:path';
import { startNats, type NatsServer } from '../tests/support/nats';
import { rng } from '../tests/support/prng';
import { type Managed, startProcess, tempDir } from '../tests/support/proc';
import { waitFor } from '../tests/support/wait';
import { checkContiguous, FakeCloud } from './testing/fake-cloud';
import { createAppDb, writeTestConfig } from './testing/fixtures';
import { journalBacklog, journalCounters } from './testing/mirror';

const REPO = resolve(__dirname, '..');
const KILLS = Number(process.env.SLUICE_CRASH_KILLS ?? 20);
const SEED = Number(process.env.SLUICE_CRASH_SEED ?? 18);

// The kill points are random but reproducible (SLUICE_CRASH_SEED).
const random = rng(SEED);

function startAgentProcess(configPath: string): Managed {
  return startProcess('node', ['--import', 'tsx', 'edge-agent/bin.ts', 'run', '--config', configPath], {
    cwd: REPO,
    env: { ...process.env, SLUICE_LOG_LEVEL: 'warn' },
  });
}

describe('crash loop', () => {
  let nats: NatsServer;
  beforeAll(async () => {
    nats = await startNats();
  });
  afterAll(async () => {
    await nats?.stop();
  });

  it(`loses nothing when the agent is killed -9 ${KILLS} times while the application writes`, async () => {
    const dir = tempDir('crash');
    const appPath = join(dir, 'app.db');
    const app = createAppDb(appPath);
    const cloud = await FakeCloud.connect(nats.mqttUrl);
    const { path: configPath } = writeTestConfig({
      dir,
      serverUrl: nats.mqttUrl,
      deviceId: 'dev-crash',
      sourceDb: appPath,
      extraReplication: 'max_batch_rows: 200\nmax_inflight_batches: 3',
    });
    // The application: small transactions on both tables, all the time.
    let n = 0;
    const ins = app.prepare('INSERT INTO device_state (mode, setpoint) VALUES (?, ?)');
    const upd = app.prepare('UPDATE device_state SET setpoint = setpoint + 1 WHERE id = ?');
    const ord = app.prepare('INSERT INTO order_events VALUES (?, ?, ?, null)');
    let writer: NodeJS.Timeout | undefined;
    const startWriter = () =>
      setInterval(() => {
        app.transaction(() => {
          for (let i = 0; i < 15; i++) {
            n++;
            ins.run('m', n);
            if (n % 3 === 0) upd.run(Math.ceil(n / 2));
            ord.run(`o${n % 13}`, n, n % 7);
          }
        })();
      }, 15);
    const triggers = () =>
      app
        .prepare("SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND name LIKE '__sluice%'")
        .pluck()
        .get();

    let agent: Managed | undefined;
    try {
      for (let k = 0; k < KILLS; k++) {
        const before = cloud.arrivals.length;
        agent = startAgentProcess(configPath);
        await waitFor(
          () =>
            cloud.arrivals.length > before || agent!.child.exitCode !== null || (k === 0 && triggers() === 8),
          {
            timeoutMs: 20_000,
            message: `agent run ${k + 1} made progress`,
          },
        );
        if (agent.child.exitCode !== null) throw new Error(`agent exited early:\n${agent.output()}`);
        if (k === 0) {
          // Counted from here: every change after capture is installed must reach the cloud.
          await waitFor(() => triggers() === 8, { message: 'capture installed' });
          writer = startWriter();
          await waitFor(() => cloud.arrivals.length > 0, { timeoutMs: 20_000, message: 'first rows' });
        }
        // A random point: mid-publish, mid-receipt, mid-cleanup.
        await new Promise((r) => setTimeout(r, Math.floor(random() * 150)));
        await agent.kill();
      }
      clearInterval(writer);

      agent = startAgentProcess(configPath);
      const seq = () => journalCounters(app);
      await waitFor(() => seq().every((t) => cloud.distinctCount(t.name) === t.seq), {
        timeoutMs: 30_000,
        message: 'every journaled change at the cloud',
      });
      expect(seq().map((t) => t.name)).toEqual(['device_state', 'order_events']);
      for (const t of seq()) {
        const rows = cloud.firstArrivals(t.name);
        expect(new Set(rows.map((r) => r.epoch))).toEqual(new Set([t.epoch]));
        expect(checkContiguous(rows)).toBeUndefined();
        expect(rows.length).toBe(t.seq);
      }
      expect(cloud.invalid).toEqual([]);
      // Each row change the application made was journaled: inserts, updates and order lines.
      const total = seq().reduce((s, t) => s + t.seq, 0);
      expect(total).toBe(n + Math.floor(n / 3) + n);
      await waitFor(() => journalBacklog(app) === 0, {
        message: 'journal drained after the last run',
      });
      const state = new Database(join(dir, 'state.db'), { readonly: true });
      expect(state.prepare('SELECT count(*) FROM inflight').pluck().get()).toBe(0);
      state.close();
    } finally {
      clearInterval(writer);
      await agent?.stop();
      await cloud.close();
      app.close();
    }
  }, 120_000);
});
