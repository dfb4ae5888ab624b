import mqtt from 'mqtt';
import pg from 'pg';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { startNats, type NatsServer } from './nats';
import { startMosquitto, type MosquittoServer } from './mosquitto';
import { createTestDatabase } from './postgres';
import { waitFor } from './wait';

async function roundTrip(url: string): Promise<string> {
  const client = await mqtt.connectAsync(url, { clientId: `t${Date.now()}`, protocolVersion: 4 });
  const got = new Promise<string>((resolve) => client.on('message', (_t, p) => resolve(p.toString())));
  await client.subscribeAsync('h/+/x', { qos: 1 });
  await client.publishAsync('h/dev/x', 'hello', { qos: 1 });
  const msg = await got;
  await client.endAsync();
  return msg;
}

describe('test harness', () => {
  let nats: NatsServer;
  let mosq: MosquittoServer;
  beforeAll(async () => {
    [nats, mosq] = await Promise.all([startNats(), startMosquitto()]);
  });
  afterAll(async () => {
    await Promise.all([nats?.stop(), mosq?.stop()]);
  });

  it('runs nats-server with JetStream', async () => {
    const nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    // The config sets an 8 MB max_payload and JetStream with no account limits.
    expect(nc.info?.max_payload).toBe(8 * 1024 * 1024);
    const info = await jsm.getAccountInfo();
    expect(info).toMatchObject({
      streams: 0,
      limits: { max_streams: -1, max_consumers: -1, max_storage: -1, max_memory: -1 },
    });
    await nc.close();
  });

  it('runs the NATS MQTT listener and Mosquitto', async () => {
    expect(await roundTrip(nats.mqttUrl)).toBe('hello');
    expect(await roundTrip(mosq.url)).toBe('hello');
  });

  it('creates a private PostgreSQL database', async () => {
    const db = await createTestDatabase();
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    const r = await c.query('select current_database() as d');
    expect(r.rows[0].d).toBe(db.name);
    await c.end();
    await db.drop();
  });

  it('waitFor fails with a message at its deadline', async () => {
    await expect(waitFor(() => false, { timeoutMs: 100, message: 'never' })).rejects.toThrow(/never/);
  });
});
