import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { uuidv7 } from 'uuidv7';
import { STREAMS, subjects } from '../../infra/nats/names';
import type { StreamSettingError } from '../../infra/nats/streams';
import { ensureStreams, isStreamSettingError } from '../../infra/nats/streams';
import { startNatsCluster, type NatsCluster, waitStreamsCurrent } from '../support/nats-cluster';
import { startProcess } from '../support/proc';
import { ROOT } from '../support/stack';
import { waitFor } from '../support/wait';

let cluster: NatsCluster;
let nc: NatsConnection;
let jsm: JetStreamManager;
const ALL = Object.values(STREAMS);

beforeAll(async () => {
  cluster = await startNatsCluster();
  nc = await connect({
    servers: cluster.nodes.map((n) => n.url),
    maxReconnectAttempts: -1,
    reconnectTimeWait: 200,
  });
  jsm = await jetstreamManager(nc, { timeout: 10_000 });
  await ensureStreams(jsm, { replicas: 3 });
}, 120_000);
afterAll(async () => {
  await nc?.close();
  await cluster?.stop();
});

const replicasOf = async (stream: string) => (await jsm.streams.info(stream)).config.num_replicas;

describe('3-node JetStream cluster', () => {
  it('keeps R3 streams writable and readable through a kill -9 of the stream leader, and the node catches up', async () => {
    for (const s of ALL) expect(await replicasOf(s)).toBe(3);
    const js = jetstream(nc, { timeout: 10_000 });
    const lineage = uuidv7();
    for (let i = 1; i <= 20; i++) await js.publish(subjects.lineage(lineage), JSON.stringify({ i }));

    const leader = (await jsm.streams.info(STREAMS.lineage)).cluster?.leader;
    const victim = cluster.nodes.findIndex((n) => n.name === leader);
    expect(victim).toBeGreaterThanOrEqual(0);
    await cluster.kill(victim);

    // A new leader is elected among the two left; publishes wait for it, none is lost or doubled.
    for (let i = 21; i <= 40; i++) {
      const data = JSON.stringify({ i });
      await waitFor(() => js.publish(subjects.lineage(lineage), data, { msgID: `${lineage}:${i}` }), {
        timeoutMs: 60_000,
        message: `publish ${i} with ${leader} down`,
      });
    }
    const last = await jsm.direct.getMessage(STREAMS.lineage, { last_by_subj: subjects.lineage(lineage) });
    expect(last?.json()).toEqual({ i: 40 });
    const info = await jsm.streams.info(STREAMS.lineage);
    expect(info.cluster?.leader).not.toBe(leader);

    await cluster.start(victim);
    await waitFor(
      async () => {
        const i = await jsm.streams.info(STREAMS.lineage);
        const back = i.cluster?.replicas?.find((r) => r.name === leader);
        return back?.current === true && (back.lag ?? 0) === 0 && i.state.last_seq === info.state.last_seq;
      },
      { timeoutMs: 60_000, message: `${leader} current again` },
    );
    // Caught up for real: with another node down, the returned one is half of the quorum.
    const other = cluster.nodes.findIndex((n, i) => i !== victim && n.running());
    await cluster.kill(other);
    await waitFor(() => js.publish(subjects.lineage(lineage), JSON.stringify({ i: 41 })), {
      timeoutMs: 60_000,
      message: 'publish with the returned node in the quorum',
    });
    const msgs = await waitFor(
      () => jsm.direct.getMessage(STREAMS.lineage, { last_by_subj: subjects.lineage(lineage) }),
      { timeoutMs: 30_000, message: 'direct get' },
    );
    expect(msgs.json()).toEqual({ i: 41 });
    expect((await jsm.streams.info(STREAMS.lineage)).state.messages).toBe(41);
    await cluster.start(other);
    await waitStreamsCurrent(jsm, ALL);
  });

  it('never lowers replicas: an absent setting keeps R3, a lower one is refused and the role exits naming both values', async () => {
    await ensureStreams(jsm, {});
    for (const s of ALL) expect(await replicasOf(s)).toBe(3);

    const err = await ensureStreams(jsm, { replicas: 1 }).catch((e: unknown) => e);
    expect(isStreamSettingError(err)).toBe(true);
    const e = err as StreamSettingError;
    expect([e.code, e.stream, e.setting, e.existing, e.wanted]).toEqual([
      'STREAM_SETTING_LOWER',
      STREAMS.lineage,
      'num_replicas',
      3,
      1,
    ]);
    expect(e.message).toContain(`stream ${STREAMS.lineage} has num_replicas 3; this role asks for 1`);
    for (const s of ALL) expect(await replicasOf(s)).toBe(3);

    const role = startProcess(join(ROOT, 'bin', 'sluice'), ['worker'], {
      env: {
        ...process.env,
        SLUICE_FROM_SOURCE: '1',
        SLUICE_NATS_URL: cluster.urls,
        SLUICE_STREAM_REPLICAS: '1',
        SLUICE_LOG_LEVEL: 'error',
      },
    });
    await waitFor(() => role.child.exitCode !== null, { timeoutMs: 60_000, message: 'role exits' });
    expect(role.child.exitCode).not.toBe(0);
    expect(role.output()).toContain('STREAM_SETTING_LOWER: stream SLUICE_LINEAGE has num_replicas 3');
    for (const s of ALL) expect(await replicasOf(s)).toBe(3);
  });
});
