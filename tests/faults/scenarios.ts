/**
 * The fault scenarios: each starts a system (cloud roles, broker, read store, a device with the
 * real agent), puts it under continuous load from a seeded application, injects its faults, lets
 * it settle, and hands everything to the checker. Two profiles: `short` (in `make test`) and
 * `long` (`make faults`, more seeds).
 */
import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { STREAMS } from '../../infra/nats/names';
import { tempDir } from '../support/proc';
import { TEST_TOKEN } from '../support/stack';
import { delay, rowsDomainState } from '../support/readside';
import { waitFor } from '../support/wait';
import { check, type Verdict } from './checker';
import { Cloud, type CloudOptions, Device, type DeviceOptions, type RoleName } from './cloud';
import { INJECTED_TABLE, Injector } from './injector';
import {
  approve,
  approveDeviceTables,
  type ExtraLineage,
  lineageIdOf,
  observe,
  observeMidFault,
  quiesce,
  readRejections,
  loadEvents,
  tableSeq,
} from './observe';
import { rng } from '../support/prng';
import { startLoad, startPyLoad, TABLE_NAMES, writeBurst } from './workload';

export type Profile = Readonly<{
  name: 'short' | 'long';
  /** Random kill points per kill scenario. */
  kills: number;
  /** Longest random wait before a fault, ms. */
  maxFaultDelayMs: number;
  brokerRestarts: number;
  pgStopMs: number;
  /** Transactions (8 changes each) written while the device is offline, and how long it stays away. */
  offlineTransactions: number;
  offlineMs: number;
  injectedBatches: number;
  /** Load before the first fault, ms. */
  warmupMs: number;
  quiesceMs: number;
}>;

export const PROFILES: Record<Profile['name'], Profile> = {
  short: {
    name: 'short',
    kills: 5,
    maxFaultDelayMs: 1_200,
    brokerRestarts: 2,
    pgStopMs: 5_000,
    offlineTransactions: 1_500,
    offlineMs: 1_000,
    injectedBatches: 40,
    warmupMs: 500,
    quiesceMs: 90_000,
  },
  long: {
    name: 'long',
    kills: 15,
    maxFaultDelayMs: 2_500,
    brokerRestarts: 5,
    pgStopMs: 30_000,
    offlineTransactions: 15_000,
    offlineMs: 20_000,
    injectedBatches: 300,
    warmupMs: 2_000,
    quiesceMs: 240_000,
  },
};

export type Ctx = Readonly<{
  cloud: Cloud;
  device: Device;
  profile: Profile;
  /** The fault points' own PRNG stream (the application has another). */
  random: () => number;
  note: (line: string) => void;
  /** Checks taken during the fault (e.g. while the device is offline), beside the final one. */
  midChecks: Verdict[];
  extra: ExtraLineage[];
}>;

export type Scenario = Readonly<{
  name: string;
  what: string;
  cloud: CloudOptions;
  device?: (dir: string) => DeviceOptions;
  /**
   * Deadline for settling after the faults, when tighter than the profile's: a read side that
   * stands still for half a minute after a restart is a defect too, not just slow.
   */
  settleMs?: number;
  /** Runs once the cloud is up, before the device starts (e.g. a project policy). */
  beforeDevice?: (cloud: Cloud) => Promise<void>;
  /** The scenario approves the device's reviews itself (otherwise they are approved at once). */
  approvesItself?: boolean;
  /** What the scenario must show beyond the invariants: refused writes, writes pending mid-fault. */
  shows?: Readonly<{ rejected?: boolean; pendingMidFault?: boolean }>;
  /** Set up before the device starts (e.g. mount its state dir); returns the cleanup. */
  prepare?: (dir: string) => () => void;
  faults: (ctx: Ctx) => Promise<void>;
}>;

export type ScenarioResult = Readonly<{
  scenario: string;
  seed: number;
  verdict: Verdict;
  midChecks: readonly Verdict[];
  transactions: number;
  ms: number;
  notes: readonly string[];
}>;

const randomDelay = (ctx: Ctx) => delay(Math.round(ctx.random() * ctx.profile.maxFaultDelayMs));

function shuffle<T>(xs: readonly T[], random: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

type Target = Readonly<{ role: RoleName | 'agent'; index: number }>;

async function killTarget(ctx: Ctx, t: Target): Promise<void> {
  if (t.role === 'agent') await ctx.device.killAndRestart();
  else await ctx.cloud.killAndRestart(t.role, t.index);
}

/** kill -9 at random points: every target once in a seeded order, then seeded picks. */
async function killLoop(ctx: Ctx, targets: readonly Target[], kills: number): Promise<void> {
  const order = [...shuffle(targets, ctx.random)];
  while (order.length < kills) order.push(targets[Math.floor(ctx.random() * targets.length)]!);
  for (const t of order) {
    await randomDelay(ctx);
    await killTarget(ctx, t);
    ctx.note(`kill -9 ${t.role}${t.index ? `#${t.index}` : ''} at ${new Date().toISOString().slice(11, 23)}`);
  }
}

/** Keeps the API busy while it is being killed: an operator polling the lineages. */
function pollApi(cloud: Cloud): () => void {
  let on = true;
  void (async () => {
    while (on) {
      await fetch(`${cloud.apiBase}/lineages`, {
        headers: { authorization: `Bearer ${TEST_TOKEN}` },
      })
        .then((r) => r.arrayBuffer())
        .catch(() => undefined);
      await delay(100);
    }
  })();
  return () => {
    on = false;
  };
}

function pause(pid: number, sig: 'SIGSTOP' | 'SIGCONT'): void {
  process.kill(pid, sig);
}

/** Fill a filesystem to the last byte; returns the filler's path. */
function fillDisk(dir: string): string {
  const path = join(dir, 'filler');
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(16 * 1024, 1);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  }
  try {
    for (;;) writeSync(fd, chunk.subarray(0, 512));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  return path;
}

export const SCENARIOS: readonly Scenario[] = [
  {
    name: 'kill-9-roles',
    what: 'kill -9 of the agent, bridge, worker, projector and API at random points',
    // A killed worker's unacked batches come back after the ack wait (30 s by default; shorter
    // here so a run settles quickly, the path is the same).
    cloud: { broker: 'nats', store: 'sqlite', layout: 'roles', workerAckWaitMs: 5_000 },
    faults: async (ctx) => {
      const stop = pollApi(ctx.cloud);
      try {
        const targets: Target[] = ['agent', 'bridge', 'worker', 'projector', 'api'].map((role) => ({
          role: role as Target['role'],
          index: 0,
        }));
        await killLoop(ctx, targets, ctx.profile.kills);
      } finally {
        stop();
      }
    },
  },
  {
    name: 'nats-kill',
    what: 'nats-server (JetStream and the MQTT listener) killed -9 and restarted',
    cloud: { broker: 'nats', store: 'sqlite', layout: 'all' },
    // Projections used to stand still ~40 s after each restart (consumers pulled with 30 s expiry).
    settleMs: 30_000,
    faults: async (ctx) => {
      for (let i = 0; i < ctx.profile.brokerRestarts; i++) {
        await randomDelay(ctx);
        await ctx.cloud.nats.kill();
        await ctx.cloud.nats.start();
        await ctx.cloud.jetstreamReady();
        ctx.note('nats-server kill -9, restart');
      }
    },
  },
  {
    name: 'mosquitto-restart',
    what: "Mosquitto with persistence restarted; the application writes through python3's sqlite3",
    cloud: { broker: 'mosquitto-persistent', store: 'sqlite', layout: 'all' },
    device: () => ({ app: 'python3' }),
    faults: async (ctx) => {
      for (let i = 0; i < ctx.profile.brokerRestarts; i++) {
        await randomDelay(ctx);
        await ctx.cloud.broker.stop();
        await ctx.cloud.broker.start();
        ctx.note('mosquitto restart');
      }
    },
  },
  {
    name: 'mosquitto-volatile-kill',
    what: 'Mosquitto without persistence killed -9 (sessions and queued messages gone) and restarted',
    cloud: { broker: 'mosquitto', store: 'sqlite', layout: 'all' },
    faults: async (ctx) => {
      for (let i = 0; i < ctx.profile.brokerRestarts; i++) {
        await randomDelay(ctx);
        await ctx.cloud.broker.kill();
        await ctx.cloud.broker.start();
        ctx.note('mosquitto kill -9, restart');
      }
    },
  },
  {
    name: 'postgres-stop',
    what: "the PostgreSQL read store stopped, then started again; the application writes through python3's sqlite3",
    cloud: { broker: 'nats', store: 'postgres', layout: 'all' },
    device: () => ({ app: 'python3' }),
    faults: async (ctx) => {
      await randomDelay(ctx);
      ctx.cloud.pg!.stop();
      const t0 = Date.now();
      // While it is down the API says so: /readyz is not ready.
      await waitFor(
        async () => {
          const r = await fetch(`${ctx.cloud.apiBase.split('/core/')[0]}/readyz`).catch(() => undefined);
          return r !== undefined && r.status !== 200;
        },
        { timeoutMs: 20_000, message: '/readyz unready while PostgreSQL is down' },
      );
      // The outage itself lasts a set time: that is the fault.
      await delay(Math.max(0, ctx.profile.pgStopMs - (Date.now() - t0)));
      ctx.cloud.pg!.start();
      ctx.note(`PostgreSQL down ${Date.now() - t0} ms`);
    },
  },
  {
    name: 'sigstop-past-ack-wait',
    what: 'worker, bridge and projector paused (SIGSTOP) past the ingress ack wait, two workers',
    cloud: { broker: 'nats', store: 'sqlite', layout: 'roles', workers: 2, workerAckWaitMs: 2_000 },
    faults: async (ctx) => {
      const targets = shuffle(
        [
          { role: 'worker', index: 0 },
          { role: 'bridge', index: 0 },
          { role: 'projector', index: 0 },
        ] as const,
        ctx.random,
      );
      for (const t of targets) {
        await randomDelay(ctx);
        const pid = ctx.cloud.proc(t.role, t.index).proc.child.pid!;
        pause(pid, 'SIGSTOP');
        // Paused for twice the ack wait: JetStream redelivers its messages to the other worker.
        await delay(4_500);
        pause(pid, 'SIGCONT');
        ctx.note(`SIGSTOP ${t.role} 4.5 s`);
      }
    },
  },
  {
    name: 'two-bridges-two-workers',
    what: 'two bridges and two workers at once, each killed -9 at random points',
    cloud: {
      broker: 'nats',
      store: 'sqlite',
      layout: 'roles',
      bridges: 2,
      workers: 2,
      workerAckWaitMs: 5_000,
    },
    faults: async (ctx) => {
      const targets: Target[] = [
        { role: 'bridge', index: 0 },
        { role: 'bridge', index: 1 },
        { role: 'worker', index: 0 },
        { role: 'worker', index: 1 },
      ];
      await killLoop(ctx, targets, Math.max(4, ctx.profile.kills - 1));
    },
  },
  {
    name: 'device-offline-large-journal',
    shows: { pendingMidFault: true },
    what: 'the device offline while its application writes a large journal, then back',
    cloud: { broker: 'nats', store: 'sqlite', layout: 'all' },
    device: () => ({ maxBatchRows: 4096 }),
    faults: async (ctx) => {
      await ctx.device.agent!.kill();
      writeBurst(ctx.device.app, ctx.random, ctx.profile.offlineTransactions);
      // Away for a while (the load keeps writing): past receipt timeouts, keepalives, ack waits.
      await delay(ctx.profile.offlineMs);
      const mid = check(await observeMidFault(ctx.cloud, ctx.device));
      ctx.midChecks.push(mid);
      ctx.note(`offline: ${mid.pending} changes waiting in the journal`);
      ctx.device.startAgent();
      await ctx.device.waitStarted();
    },
  },
  {
    name: 'duplicate-reorder',
    shows: { rejected: true },
    what: 'duplicate and re-ordered deliveries inside and outside the dedupe window, refused batches',
    cloud: { broker: 'nats', store: 'sqlite', layout: 'all' },
    device: () => ({ receiptTimeout: '1s' }),
    faults: async (ctx) => {
      const inj = await Injector.connect(ctx.cloud.mqttUrl, 'injector', ctx.random);
      try {
        const first = inj.next();
        await inj.publish(first);
        const lineageId = await approve(ctx.cloud, inj.device, INJECTED_TABLE);
        const batches = Array.from({ length: ctx.profile.injectedBatches }, () => inj.next());
        // Inside the window: pairs swapped, some sent twice at once, some old ones again.
        for (let i = 0; i < batches.length; i++) {
          const b = batches[i]!;
          const next = batches[i + 1];
          if (next && ctx.random() < 0.3) {
            await inj.publish(next);
            await inj.publish(b);
            i++;
          } else await inj.publish(b);
          if (ctx.random() < 0.3) await inj.publish(b, true);
          if (ctx.random() < 0.15) await inj.publish(batches[Math.floor(ctx.random() * (i + 1))]!, true);
          if (ctx.random() < 0.05) await inj.publish(inj.refused());
        }
        await inj.publish(inj.refused());
        // Outside the window: shrink it, let it pass, and send old batches again (same ids and new).
        const jsm = await jetstreamManager(ctx.cloud.nc);
        const info = await jsm.streams.info(STREAMS.ingress);
        await jsm.streams.update(STREAMS.ingress, { ...info.config, duplicate_window: 1_000_000_000 });
        const t0 = Date.now();
        await waitFor(() => Date.now() - t0 > 1_500, { message: 'the dedupe window passed' });
        for (const b of shuffle([first, ...batches], ctx.random).slice(0, Math.ceil(batches.length / 2))) {
          await inj.publish(b, true);
          if (ctx.random() < 0.3) await inj.publish(inj.again(b), true);
        }
        ctx.note(`${inj.batches.length} batches, ${inj.redeliveries} redeliveries`);
        await waitFor(
          async () => (await rowsDomainState(ctx.cloud.nc, lineageId)).last_commit_seq === inj.lastSeq,
          { timeoutMs: 60_000, intervalMs: 200, message: 'every injected change in the lineage' },
        );
        ctx.extra.push({
          table: INJECTED_TABLE,
          lineage_id: lineageId,
          writes: inj.writes,
          device: inj.image(),
        });
      } finally {
        await inj.close();
      }
    },
  },
  {
    name: 'backpressure-controls',
    what: 'a 300-row backlog cap: pause_lineage and resume_lineage controls, the agent killed -9 while paused and while it drains',
    cloud: { broker: 'nats', store: 'sqlite', layout: 'all' },
    beforeDevice: async (cloud) => {
      const r = await fetch(`${cloud.apiBase}/policy`, {
        method: 'PATCH',
        headers: {
          authorization: `Bearer ${TEST_TOKEN}`,
          'content-type': 'application/json',
          'idempotency-key': 'faults-policy',
        },
        body: JSON.stringify({ max_pending_rows_per_lineage: 300 }),
      });
      if (r.status !== 200) throw new Error(`PATCH /policy: ${r.status} ${await r.text()}`);
    },
    approvesItself: true,
    faults: async (ctx) => {
      const { cloud, device } = ctx;
      const stock = await lineageIdOf(cloud, device.name, 'stock');
      const controlOf = async (kind: string, acked: boolean) =>
        waitFor(
          async () => {
            const events = await loadEvents(cloud, stock);
            const issued = events.find((e) => e.type === 'ControlIssued' && e.data.control_kind === kind);
            if (issued?.type !== 'ControlIssued') return undefined;
            const id = issued.data.control_id;
            return !acked || events.some((e) => e.type === 'ControlAcknowledged' && e.data.control_id === id);
          },
          { timeoutMs: 60_000, intervalMs: 200, message: `${kind}${acked ? ' acknowledged' : ''} on stock` },
        );
      // The backlog grows past the cap while the schema waits for review: the device is paused.
      await controlOf('pause_lineage', false);
      await randomDelay(ctx);
      await device.killAndRestart();
      ctx.note('pause_lineage issued; kill -9 agent');
      await controlOf('pause_lineage', true);
      await randomDelay(ctx);
      await approveDeviceTables(cloud, device);
      ctx.note('approved');
      await randomDelay(ctx);
      await device.killAndRestart();
      ctx.note('kill -9 agent while it drains');
      await controlOf('resume_lineage', true);
      ctx.note('resume_lineage acknowledged');
    },
  },
  {
    name: 'disk-full-state-dir',
    what: "the device's state dir (a 2 MiB tmpfs) full, the agent restarted while it is, then space freed",
    cloud: { broker: 'nats', store: 'sqlite', layout: 'all' },
    prepare: (dir) => {
      mkdirSync(dir, { recursive: true });
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir]);
      return () => execFileSync('umount', ['-l', dir]);
    },
    device: (dir) => ({ stateDir: dir }),
    faults: async (ctx) => {
      const dir = ctx.device.stateDir;
      await randomDelay(ctx);
      const filler = fillDisk(dir);
      // Running on a full disk, then a restart on it: the agent must say so and keep its state.
      await randomDelay(ctx);
      await ctx.device.agent!.kill();
      const agent = ctx.device.startAgent();
      const said = await waitFor(
        () =>
          agent
            .output()
            .split('\n')
            .find((l) => l.includes('"event":"state_disk_full"')),
        {
          timeoutMs: 30_000,
          message: 'the agent reports the full disk',
        },
      );
      ctx.note(`agent on a full disk: ${/"msg":"([^"]*)"/.exec(said)?.[1]?.slice(0, 120) ?? said}…`);
      const mid = check(await observeMidFault(ctx.cloud, ctx.device));
      ctx.midChecks.push(mid);
      if (agent.child.exitCode !== null)
        throw new Error(`the agent died on a full disk: ${agent.output().slice(-2000)}`);
      if (process.env.SLUICE_FAULTS_TRACE === '1') console.error(agent.output());
      rmSync(filler);
      if (agent.child.exitCode !== null || agent.child.signalCode !== null) ctx.device.startAgent();
      await ctx.device.waitStarted();
      const state = new Database(join(dir, 'state.db'), { readonly: true });
      const integrity = state.pragma('integrity_check', { simple: true });
      state.close();
      if (integrity !== 'ok')
        throw new Error(`state.db is corrupt after the full disk: ${String(integrity)}`);
      ctx.note('state.db integrity ok');
    },
  },
];

export async function runScenario(s: Scenario, seed: number, profile: Profile): Promise<ScenarioResult> {
  const t0 = Date.now();
  const notes: string[] = [];
  const midChecks: Verdict[] = [];
  const extra: ExtraLineage[] = [];
  const stateDir = join(tempDir('faults-state'), 'state');
  const unprepare = s.prepare?.(stateDir);
  let cloud: Cloud | undefined;
  let device: Device | undefined;
  let writer: ReturnType<typeof startLoad> | undefined;
  try {
    cloud = await Cloud.start(s.cloud);
    await s.beforeDevice?.(cloud);
    device = Device.start(`dev-${s.name}-${seed}`, cloud.mqttUrl, s.device?.(stateDir) ?? {});
    await device.waitStarted();
    const phase = (what: string, since: number) => notes.push(`${what} ${Date.now() - since} ms`);
    phase('started', t0);
    writer = device.py ? startPyLoad(device.py, rng(seed)) : startLoad(device.app, rng(seed));
    if (device.py) notes.push(`application on python3 sqlite3 ${await device.py.sqliteVersion()}`);
    const tApprove = Date.now();
    if (!s.approvesItself) {
      await approveDeviceTables(cloud, device);
      phase('approved', tApprove);
    }
    await delay(profile.warmupMs);
    const tFaults = Date.now();
    const ctx: Ctx = {
      cloud,
      device,
      profile,
      random: rng(seed ^ 0x9e3779b9),
      note: (l) => notes.push(l),
      midChecks,
      extra,
    };
    await s.faults(ctx);
    phase('faults', tFaults);
    const transactions = await writer.stop();
    writer = undefined;
    const dev = device;
    const lineages = await Promise.all(
      TABLE_NAMES.map(async (t) => ({
        id: await lineageIdOf(cloud!, dev.name, t),
        lastSeq: tableSeq(dev, t),
      })),
    );
    try {
      const tQuiet = Date.now();
      await quiesce(cloud, lineages, Math.min(profile.quiesceMs, s.settleMs ?? Infinity));
      phase('settled', tQuiet);
    } catch (err) {
      throw new Error(
        `${(err as Error).message}\n${cloud.logs()}\n--- agent\n${dev.agent?.output().slice(-2000)}`,
        { cause: err },
      );
    }
    const checked = check(await observe(cloud, device, { final: true, extra }));
    // Faults are injected from outside; no process may die of them on its own.
    const died = [
      ...cloud.procs
        .filter((p) => p.proc.child.exitCode !== null || p.proc.child.signalCode !== null)
        .map(
          (p) =>
            `${p.role}#${p.index} exited (${p.proc.child.exitCode ?? p.proc.child.signalCode}): ${p.proc.output().slice(-800)}`,
        ),
      ...(device.agent && device.agent.child.exitCode !== null
        ? [`the agent exited: ${device.agent.output().slice(-800)}`]
        : []),
    ];
    const verdict = { ...checked, violations: [...checked.violations, ...died] };
    if (verdict.violations.length > 0) notes.push(`evidence kept in ${await keepEvidence(cloud, device)}`);
    return { scenario: s.name, seed, verdict, midChecks, transactions, ms: Date.now() - t0, notes };
  } finally {
    await writer?.stop().catch(() => undefined);
    await device?.stop();
    await cloud?.stop();
    unprepare?.();
    if (existsSync(stateDir)) rmSync(stateDir, { recursive: true, force: true });
  }
}

/** A failed check keeps what explains it: the agent's log, the cloud's logs, every lineage event. */
async function keepEvidence(cloud: Cloud, device: Device): Promise<string> {
  const dir = tempDir('faults-evidence');
  copyFileSync(join(device.dir, 'agent.log'), join(dir, 'agent.log'));
  writeFileSync(join(dir, 'cloud.log'), cloud.logs(200_000));
  for (const t of TABLE_NAMES) {
    const id = await lineageIdOf(cloud, device.name, t);
    const lines = (await loadEvents(cloud, id)).map((e) =>
      e.type === 'RowsAccepted' || e.type === 'RowsStaged'
        ? `${e.type} ${e.data.batch_id} ${e.data.journal_epoch} ${e.data.rows[0]?.commit_seq}..${e.data.rows.at(-1)?.commit_seq} (${e.data.rows.length}, dup ${e.data.duplicates_skipped})`
        : e.type,
    );
    writeFileSync(join(dir, `events-${t}.txt`), lines.join('\n'));
  }
  writeFileSync(join(dir, 'rejections.json'), JSON.stringify(await readRejections(cloud), null, 1));
  return dir;
}
