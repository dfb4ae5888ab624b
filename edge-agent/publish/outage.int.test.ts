import { join } from 'node:path';
import { startMosquitto } from '../../tests/support/mosquitto';
import { startNats } from '../../tests/support/nats';
import { tempDir } from '../../tests/support/proc';
import { waitFor } from '../../tests/support/wait';
import { startAgent } from '../main';
import { silentLogger } from '../../infra/log';
import { checkContiguous, FakeCloud } from '../testing/fake-cloud';
import { createAppDb, writeTestConfig } from '../testing/fixtures';

// Default suite: a modest outage. SLUICE_LONG=1: 100k rows over a 60 s outage.
const LONG = process.env.SLUICE_LONG === '1';
const ROWS = LONG ? 100_000 : 20_000;
const DOWN_MS = LONG ? 60_000 : 5_000;

type Broker = { url: string; stop: () => Promise<void>; start: () => Promise<void> };
const brokers: [string, () => Promise<Broker>][] = [
  [
    'NATS MQTT listener',
    async () => {
      const n = await startNats();
      return { url: n.mqttUrl, stop: n.stop, start: n.start };
    },
  ],
  [
    'Mosquitto',
    async () => {
      const m = await startMosquitto();
      return { url: m.url, stop: m.stop, start: m.start };
    },
  ],
];

describe.each(brokers)('broker outage on %s', (_name, startBroker) => {
  let broker: Broker;
  beforeAll(async () => {
    broker = await startBroker();
  });
  afterAll(async () => {
    await broker?.stop();
  });

  it(
    `journals ${ROWS} rows written while the broker is down and delivers all of them when it returns`,
    async () => {
      const dir = tempDir('agent');
      const app = createAppDb(join(dir, 'app.db'));
      const cloud = await FakeCloud.connect(broker.url);
      const { config } = writeTestConfig({ dir, serverUrl: broker.url, sourceDb: join(dir, 'app.db') });
      const agent = await startAgent(config, {
        logger: silentLogger(),
        backoff: { minMs: 100, maxMs: 1000 },
      });
      try {
        const ins = app.prepare('INSERT INTO device_state (mode, setpoint, updated_at) VALUES (?, ?, ?)');
        const write = (n: number) =>
          app.transaction(() => {
            for (let i = 0; i < n; i++) ins.run('cool', i, '2026-01-01T00:00:00Z');
          })();
        write(500);
        await waitFor(() => cloud.distinctCount('device_state') === 500, {
          message: 'flowing before the outage',
        });
        // Received is not confirmed: a receipt still on its way when the broker stops would leave
        // its rows pending through the outage, beside the ones written during it.
        await waitFor(() => agent.stats().tables.device_state?.pending_rows === 0, {
          message: () =>
            `the first rows confirmed (${agent.stats().tables.device_state?.pending_rows} pending)`,
        });

        await broker.stop();
        await waitFor(() => !agent.stats().connected, { message: 'agent sees the outage' });
        // The application keeps writing for the whole outage, a chunk per probe.
        const chunk = Math.ceil(ROWS / (DOWN_MS / 100));
        const t0 = Date.now();
        let written = 0;
        await waitFor(
          () => {
            if (written < ROWS) {
              const n = Math.min(chunk, ROWS - written);
              write(n);
              written += n;
            }
            return written >= ROWS && Date.now() - t0 >= DOWN_MS;
          },
          { timeoutMs: DOWN_MS * 3, intervalMs: 100, message: 'outage elapsed' },
        );
        await waitFor(() => agent.stats().tables.device_state?.pending_rows === ROWS, {
          message: () =>
            `every row written during the outage is journaled (${agent.stats().tables.device_state?.pending_rows} of ${ROWS} pending)`,
        });

        await broker.start();
        const total = ROWS + 500;
        await waitFor(() => cloud.distinctCount('device_state') === total, {
          timeoutMs: LONG ? 120_000 : 30_000,
          message: `all ${total} rows after the outage`,
        });
        expect(checkContiguous(cloud.firstArrivals('device_state'))).toBeUndefined();
        expect(cloud.invalid).toEqual([]);
        await waitFor(() => agent.stats().tables.device_state?.pending_rows === 0, {
          message: 'every row confirmed',
        });
      } finally {
        await agent.stop();
        await cloud.close();
        app.close();
      }
    },
    LONG ? 300_000 : 60_000,
  );
});
