/**
 * The benchmark suite: the whole pipeline and the raw components it stands on, side by side, in
 * one run on the same machine and data. Prints a table and the ratios; `--out FILE` writes JSON.
 *
 *   node --import ./node_modules/tsx/dist/loader.mjs bench/run.ts [--quick] [--out FILE]
 *     [--profile default|safe|both] [--only GROUP,…] [--cpu-prof DIR] [--max-seconds N]
 *     [--fleet-devices N]
 *
 * Groups: raw, edge, ingest, naive, full, fleet (the 50-device stage of full alone), fleet1k (1,000
 * simulated devices; `--fleet-devices N` for another count; alone it also runs the 1-device burst
 * at 256 B for the fleet/single ratio), cluster (the 1-device stage on a 3-node R3 cluster, for
 * cluster/single; alone it also runs the 1-device burst), drain, rebuild, api. Everything runs on private
 * servers on loopback ports (tests/support), which are removed at the end. The run stops by
 * itself: each stage is bounded, and a watchdog ends the run at --max-seconds.
 */
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { cleanupAll, onCleanup } from './lib/cleanup';
import {
  type Ctx,
  databaseFactory,
  FULL,
  natsSyncAlwaysSupported,
  natsTracked,
  type Profile,
  QUICK,
  removeCluster,
  startNatsFor,
  startShared,
  type StageResult,
} from './lib/context';
import { PeakRss } from './lib/rss';
import { ratio } from './lib/stats';
import { renderTable } from './lib/table';
import { apiReads } from './stages/api';
import { clusterFull } from './stages/cluster';
import { agentPublish, ingest } from './stages/edge';
import { fleet1k } from './stages/fleet1k';
import { drain, fullSystem, startCloud } from './stages/full';
import { naive } from './stages/naive';
import { rawJetStream, rawMqtt, rawPostgres, sqliteWrites } from './stages/raw';
import { rebuild } from './stages/readside';

type Args = {
  quick: boolean;
  out?: string;
  profiles: Profile[];
  only?: Set<string>;
  cpuProf?: string;
  maxSeconds: number;
  fleetDevices?: number;
};

function parseArgs(argv: string[]): Args {
  const value = (flag: string) => {
    const i = argv.indexOf(flag);
    if (i < 0) return undefined;
    const v = argv[i + 1];
    if (!v || v.startsWith('--')) throw new Error(`${flag} needs a value`);
    return v;
  };
  const known = new Set([
    '--quick',
    '--out',
    '--profile',
    '--only',
    '--cpu-prof',
    '--max-seconds',
    '--fleet-devices',
  ]);
  for (const a of argv) if (a.startsWith('--') && !known.has(a)) throw new Error(`unknown option ${a}`);
  const quick = argv.includes('--quick');
  const profile = value('--profile') ?? (quick ? 'default' : 'both');
  if (!['default', 'safe', 'both'].includes(profile))
    throw new Error(`--profile is default, safe or both, not ${profile}`);
  const only = value('--only');
  const out = value('--out');
  const cpuProf = value('--cpu-prof');
  const fleetDevices = value('--fleet-devices');
  if (fleetDevices !== undefined && !(Number(fleetDevices) >= 1))
    throw new Error(`--fleet-devices is a positive number, not ${fleetDevices}`);
  return {
    quick,
    ...(out ? { out } : {}),
    profiles: profile === 'both' ? ['default', 'safe'] : [profile as Profile],
    ...(only ? { only: new Set(only.split(',')) } : {}),
    ...(cpuProf ? { cpuProf } : {}),
    ...(fleetDevices ? { fleetDevices: Number(fleetDevices) } : {}),
    maxSeconds: Number(value('--max-seconds') ?? (quick ? 150 : 1800)),
  };
}

const REFERENCE_SIZE = 256;

function ratios(results: readonly StageResult[]) {
  const rate = (stage: string, profile: Profile = 'default', size = REFERENCE_SIZE) =>
    results.find((r) => r.stage === stage && r.profile === profile && (r.row_bytes ?? size) === size)
      ?.rows_per_s?.median;
  const full = rate('full.sustained');
  const rawPg = rate('raw.postgres');
  const rawJs = rate('raw.jetstream');
  const rawMin = rawPg === undefined || rawJs === undefined ? undefined : Math.min(rawPg, rawJs);
  return {
    row_bytes: REFERENCE_SIZE,
    'full/naive': ratio(full, rate('naive')),
    'full/raw': ratio(full, rawMin),
    capture: ratio(rate('edge.capture.tx1'), rate('raw.sqlite.tx1')),
    capture_100_per_tx: ratio(rate('edge.capture.tx100'), rate('raw.sqlite.tx100')),
    rebuild: ratio(rate('rebuild'), rawPg),
    'safe/default': ratio(rate('full.sustained', 'safe'), full),
    // The 1,000-device stage (sustained under stepped load) over the 1-device burst.
    'fleet/single': ratio(rate('full.sustained.fleet1k'), full),
    'fleet50/single': ratio(rate('full.sustained.fleet'), full),
    // The same 1-device stage on a 3-node cluster with R3 streams over the single server (R1).
    'cluster/single': ratio(rate('full.sustained.cluster'), full),
  };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const sizes = {
    ...(args.quick ? QUICK : FULL),
    ...(args.fleetDevices ? { fleet1kDevices: args.fleetDevices } : {}),
  };
  // Stages stop starting new runs past this; the watchdog ends everything a little later.
  const deadline = started + args.maxSeconds * 1000 * 0.85;
  let onLimit = () => undefined as void;
  const watchdog = setTimeout(() => {
    console.error(`bench: stopped at the ${args.maxSeconds} s limit; writing what was measured`);
    onLimit();
    void cleanupAll(3_000).finally(() => process.exit(2));
  }, args.maxSeconds * 1000);
  watchdog.unref();
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.on(sig, () => void cleanupAll(3_000).finally(() => process.exit(130)));

  const log = (m: string) =>
    console.error(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${m}`);
  const want = (g: string) => !args.only || args.only.has(g);
  log(
    `bench${args.quick ? ' --quick' : ''}: profiles ${args.profiles.join(', ')}; load average ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')} on ${cpus().length} cores`,
  );
  const shared = await startShared();
  onCleanup(() => removeCluster(shared.pg));
  onCleanup(() => shared.mosq.stop());
  const createDatabase = databaseFactory(shared.pg.url);
  const results: StageResult[] = [];
  const failures: { stage: string; profile: Profile; error: string }[] = [];
  /** Print the table and ratios and write the JSON: at the end, or with what there is at the limit. */
  const finish = (partial: boolean) => {
    const r = ratios(results);
    const elapsed = (Date.now() - started) / 1000;
    console.log('');
    console.log(renderTable(results));
    console.log('');
    console.log(
      `ratios at ${REFERENCE_SIZE} B: ` +
        Object.entries(r)
          .filter(([k]) => k !== 'row_bytes')
          // A ratio whose stages did not run (the safe profile in --quick) is not measured, not NaN.
          .map(([k, v]) => `${k} ${Number.isNaN(v) ? 'not measured' : v}`)
          .join(', '),
    );
    if (failures.length)
      console.log(`failed stages: ${failures.map((f) => `${f.stage} (${f.profile})`).join(', ')}`);
    console.log(
      `elapsed ${elapsed.toFixed(1)} s, load average ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
    );
    if (args.out) {
      writeFileSync(
        args.out,
        JSON.stringify(
          {
            started_at: new Date(started).toISOString(),
            elapsed_s: Math.round(elapsed * 10) / 10,
            quick: args.quick,
            partial,
            profiles: args.profiles,
            jetstream_sync_always: natsSyncAlwaysSupported(),
            machine: {
              cpus: cpus().length,
              model: cpus()[0]?.model,
              loadavg_end: loadavg(),
              node: process.version,
            },
            sizes,
            ratios: r,
            results,
            failures,
          },
          null,
          2,
        ),
      );
    }
    console.log(
      `ratios: full/naive=${r['full/naive']} full/raw=${r['full/raw']} capture=${r.capture} rebuild=${r.rebuild} fleet/single=${r['fleet/single']} cluster/single=${r['cluster/single']}`,
    );
  };
  onLimit = () => finish(true);
  const attempt = async (stage: string, profile: Profile, f: () => Promise<StageResult | StageResult[]>) => {
    try {
      const r = await f();
      results.push(...(Array.isArray(r) ? r : [r]));
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      failures.push({ stage, profile, error });
      log(`  FAILED ${stage} (${profile}): ${error.slice(0, 2000)}`);
    }
  };

  for (const profile of args.profiles) {
    // A free port can be taken by another process before the server binds it: try again.
    let nats: Awaited<ReturnType<typeof startNatsFor>> | undefined;
    for (let attempt = 0; !nats && attempt < 3; attempt++) {
      nats = await startNatsFor(profile).catch((err: unknown) => {
        log(`  nats-server for ${profile} did not start (${(err as Error).message}); trying again`);
        return undefined;
      });
    }
    if (!nats) {
      failures.push({ stage: 'nats-server', profile, error: 'nats-server did not start' });
      continue;
    }
    const stopNats = onCleanup(() => nats.stop());
    const ctx: Ctx = {
      profile,
      quick: args.quick,
      sizes,
      nats,
      mosq: shared.mosq,
      pgAdminUrl: shared.pg.url,
      rss: new PeakRss([natsTracked(nats), ...shared.tracked]),
      sqliteSync: profile === 'safe' ? 'FULL' : 'NORMAL',
      cpuProfDir: args.cpuProf,
      log,
      createDatabase,
      deadline,
    };
    // The safe profile measures the reference row size only: it shows what fsync costs.
    const rowSizes = profile === 'safe' ? [REFERENCE_SIZE] : sizes.rowSizes;
    log(`profile ${profile}: row sizes ${rowSizes.join(', ')} B`);
    if (profile === 'safe' && !natsSyncAlwaysSupported())
      log(
        '  this nats-server has no `sync_interval` (before 2.10): JetStream keeps its default flush in the safe profile',
      );
    for (const size of rowSizes) {
      if (want('raw')) {
        await attempt('raw.postgres', profile, () => rawPostgres(ctx, size));
        await attempt('raw.jetstream', profile, () => rawJetStream(ctx, size));
        await attempt('raw.mqtt.nats', profile, () => rawMqtt(ctx, 'nats', size));
        await attempt('raw.mqtt.mosquitto', profile, () => rawMqtt(ctx, 'mosquitto', size));
        for (const perTx of [1, 100])
          await attempt(`raw.sqlite.tx${perTx}`, profile, () => sqliteWrites(ctx, size, perTx, false));
      }
      if (want('edge')) {
        for (const perTx of [1, 100])
          await attempt(`edge.capture.tx${perTx}`, profile, () => sqliteWrites(ctx, size, perTx, true));
        await attempt('edge.agent.nats', profile, () => agentPublish(ctx, 'nats', size));
        if (size === REFERENCE_SIZE)
          await attempt('edge.agent.mosquitto', profile, () => agentPublish(ctx, 'mosquitto', size));
      }
      if (want('ingest') && size === REFERENCE_SIZE)
        await attempt('ingest', profile, () => ingest(ctx, size));
      if (want('naive')) await attempt('naive', profile, () => naive(ctx, size));
    }
    // `fleet`: only the 50-device stage of `full` (the 1-device stages are skipped); `fleet1k`:
    // the simulated 1,000 devices, with the 1-device burst at the reference size for its ratio.
    if (want('full') || want('drain') || want('fleet') || want('fleet1k') || want('cluster')) {
      try {
        const cloud = await startCloud(ctx, await createDatabase(`read_${profile}`));
        const stopCloud = onCleanup(() => cloud.stop());
        log(`  sluice roles up (bridge, worker, projector, api)`);
        for (const size of rowSizes) {
          if (!want('full') && size !== REFERENCE_SIZE) continue;
          if (want('full') || want('drain') || want('fleet1k') || want('cluster')) {
            let single: Awaited<ReturnType<typeof fullSystem>> | undefined;
            await attempt('full.sustained', profile, async () => {
              single = await fullSystem(ctx, cloud, size, 1);
              if (want('full')) return single.results;
              return want('fleet1k') || want('cluster')
                ? single.results.filter((r) => r.stage === 'full.sustained')
                : [];
            });
            if (size === REFERENCE_SIZE && want('drain') && single?.device && single.agents) {
              const { device, agents } = single;
              await attempt('drain', profile, () => drain(ctx, cloud, size, device, agents));
            } else {
              await single?.agents?.stop();
              single?.device?.db.close();
            }
          }
          if (size === REFERENCE_SIZE && (want('full') || want('fleet')))
            await attempt(
              'full.sustained.fleet',
              profile,
              async () => (await fullSystem(ctx, cloud, size, sizes.fleetDevices)).results,
            );
          // The safe profile changes the devices' SQLite, which simulated devices do not have.
          if (size === REFERENCE_SIZE && want('fleet1k') && profile === 'default')
            await attempt('full.sustained.fleet1k', profile, () => fleet1k(ctx, cloud, size));
        }
        await cloud.stop();
        stopCloud();
      } catch (err) {
        failures.push({ stage: 'full', profile, error: (err as Error).message });
        log(`  FAILED full (${profile}): ${(err as Error).message.slice(0, 2000)}`);
      }
    }
    // Right after the single-server stage, so that both rates see the same machine.
    if (want('cluster') && profile === 'default') {
      log('  3-node cluster, R3 streams');
      await attempt('full.sustained.cluster', profile, () =>
        clusterFull(ctx, REFERENCE_SIZE, shared.tracked),
      );
    }
    // Rebuild reads events and writes PostgreSQL, whose settings are the same in both profiles.
    if (profile === args.profiles[0]) {
      if (want('rebuild')) {
        await attempt('rebuild', profile, () => rebuild(ctx, REFERENCE_SIZE));
        // Many devices send small batches: the per-event cost of the projection decides there.
        await attempt('rebuild.small', profile, () => rebuild(ctx, REFERENCE_SIZE, 25));
      }
      if (want('api')) await attempt('api', profile, () => apiReads(ctx));
    }
    await nats.stop();
    stopNats();
  }

  finish(false);
  await cleanupAll();
  process.exit(failures.length ? 1 : 0);
}

main().catch(async (err: unknown) => {
  console.error(err);
  await cleanupAll(3_000);
  process.exit(1);
});
