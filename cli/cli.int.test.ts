import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import type { FastifyInstance } from 'fastify';
import { uuidv7 } from 'uuidv7';
import { buildApp } from '../api/app';
import { MANAGE, READ, TokenBook } from '../api/auth/tokens';
import { ingestRows } from '../api/testing';
import { JetStreamEventStore } from '../infra/nats/event-store';
import { Registry } from '../infra/nats/registry';
import { ensureStreams } from '../infra/nats/streams';
import { silentLogger } from '../infra/log';
import { createMetrics } from '../infra/metrics';
import { type Projector, startProjector } from '../projections';
import { openTestStore, type TestStore } from '../projections/test-support/stores';
import { startNats, type NatsServer } from '../tests/support/nats';
import { freePort } from '../tests/support/proc';
import { waitFor } from '../tests/support/wait';
import { CommandService, projectorCommands } from '../worker/commands';
import { LineageCommandHandler } from '../worker/handler';
import { EXIT } from './client';
import { runCli } from './program';

const P = '0190a000-0000-7000-8000-0000000000c1';
const MANAGER = 'cli-manager-token-aaaaaaa';
const READER = 'cli-reader-token-aaaaaaaa';

/**
 * The operator verbs in-process (`runCli`) against a real API over HTTP, NATS and SQLite: what
 * they print, and the exit codes scripts rely on.
 */
describe('sluice operator CLI', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let ts: TestStore;
  let projector: Projector;
  let app: FastifyInstance;
  let handler: LineageCommandHandler;
  let api: string;
  const small = uuidv7();
  const big = uuidv7();

  const cli = async (args: string[], token = MANAGER) => {
    let stdout = '';
    let stderr = '';
    const { code } = await runCli([...args, '--api', api, '--token', token, '--project', P], {
      out: async (t) => {
        stdout += t;
      },
      err: (t) => {
        stderr += t;
      },
    });
    return { code, stdout, stderr };
  };
  const cliJson = async <T>(args: string[]) => {
    const r = await cli([...args, '--json']);
    if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };

  beforeAll(async () => {
    nats = await startNats();
    nc = await connect({ servers: nats.url });
    await ensureStreams(await jetstreamManager(nc));
    const events = await JetStreamEventStore.create(nc);
    handler = new LineageCommandHandler(events);
    const commands = new CommandService(handler);
    ts = await openTestStore('sqlite');
    projector = await startProjector({
      nc,
      store: ts.store,
      log: silentLogger(),
      commands: projectorCommands(commands),
    });
    app = await buildApp({
      store: ts.store,
      commands,
      events,
      policies: await Registry.open(nc),
      metrics: createMetrics(),
      tokens: new TokenBook([
        { token: MANAGER, project_id: P, permissions: [READ, MANAGE], name: 'cli-ops' },
        { token: READER, project_id: P, permissions: [READ] },
      ]),
    });
    api = await app.listen({ host: '127.0.0.1', port: 0 });
    await ingestRows(handler, { project_id: P, lineage_id: small, device_name: 'gw-cli', seqs: [1, 2, 3] });
    const epoch = uuidv7();
    for (let start = 1; start <= 1200; start += 400)
      await ingestRows(handler, {
        project_id: P,
        lineage_id: big,
        device_name: 'gw-cli-big',
        seqs: Array.from({ length: 400 }, (_, i) => start + i),
        journal_epoch: epoch,
      });
    await projector.waitForCaughtUp();
  });
  afterAll(async () => {
    await app?.close();
    await projector?.stop();
    await ts?.cleanup();
    await nc?.close();
    await nats?.stop();
  });

  const reviewOf = async (lineage: string) =>
    (
      await cliJson<{ items: { review_id: string; status: string; action_version: number }[] }>([
        'reviews',
        'ls',
        '--lineage',
        lineage,
      ])
    ).items[0]!;

  it('lists and shows lineages', async () => {
    const ls = await cli(['lineages', 'ls']);
    expect(ls.code).toBe(EXIT.ok);
    expect(ls.stdout).toMatch(/^LINEAGE\s+DEVICE\s+TABLE\s+STATUS\s+PAUSED FOR/m);
    expect(ls.stdout).toContain(small);
    expect(ls.stdout).toMatch(
      new RegExp(`${small}\\s+gw-cli\\s+device_state\\s+paused\\s+schema_review\\s+3`),
    );
    const json = await cliJson<{ items: { lineage_id: string }[]; total: number }>([
      'lineages',
      'ls',
      '--device',
      'gw-cli-big',
    ]);
    expect(json.items.map((l) => l.lineage_id)).toEqual([big]);
    const all = await cli(['lineages', 'ls', '--all', '--limit', '1']);
    expect(all.stdout).toContain(small);
    expect(all.stdout).toContain(big);
    expect(all.stdout).toMatch(/2 lineages\n$/);

    const show = await cli(['lineages', 'show', small]);
    expect(show.code).toBe(EXIT.ok);
    expect(show.stdout).toMatch(/status:\s+paused \(schema_review\)/);
    expect(show.stdout).toMatch(/next: sluice reviews show \S+, then sluice reviews approve \S+ --claim/);
  });

  it('exits 2 on usage errors, 3 on unknown ids, 5 on auth, 1 when the API is unreachable', async () => {
    expect((await cli(['lineages', 'ls', '--status', 'sleeping'])).code).toBe(EXIT.usage);
    expect((await cli(['lineages', 'show', 'not-a-uuid'])).code).toBe(EXIT.usage);
    expect((await cli(['lineages', 'frobnicate'])).code).toBe(EXIT.usage);
    expect((await cli(['reviews', 'reject', uuidv7()])).code).toBe(EXIT.usage); // --reason missing
    const missing = await cli(['lineages', 'show', uuidv7()]);
    expect(missing.code).toBe(EXIT.notFound);
    expect(missing.stderr).toMatch(/lineage not found\n {2}check the id, and the project/);
    const bad = await cli(['lineages', 'ls'], 'not-a-valid-token-at-all');
    expect(bad.code).toBe(EXIT.auth);
    expect(bad.stderr).toContain('unknown bearer token');
    const other = await runCli(['lineages', 'ls', '--api', api, '--token', MANAGER, '--project', uuidv7()], {
      out: async () => undefined,
      err: () => undefined,
    });
    expect(other.code).toBe(EXIT.notFound);
    const port = await freePort();
    let err = '';
    const down = await runCli(['lineages', 'ls', '--api', `http://127.0.0.1:${port}`, '--token', MANAGER], {
      out: async () => undefined,
      err: (t) => {
        err += t;
      },
    });
    expect(down.code).toBe(EXIT.unexpected);
    expect(err).toMatch(/cannot reach the Sluice API .*ECONNREFUSED[\s\S]*SLUICE_API_URL/);
    const json = await cli(['lineages', 'show', uuidv7(), '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({
      ok: false,
      exit_code: EXIT.notFound,
      error: { code: 'not_found', status: 404 },
    });
  });

  it('pages through staged rows', async () => {
    const first = await cli(['rows', 'staged', big, '--limit', '5']);
    expect(first.code).toBe(EXIT.ok);
    expect(first.stdout).toMatch(/^COMMIT_SEQ\s+OP\s+KEY\s+ROW\s+REASON/);
    const cursor = /--after (\S+)/.exec(first.stdout)?.[1];
    expect(cursor).toBeDefined();
    expect(first.stdout).toMatch(/5 of 1200 staged rows/);
    const next = await cliJson<{ items: { commit_seq: number }[] }>([
      'rows',
      'staged',
      big,
      '--limit',
      '3',
      '--after',
      cursor!,
    ]);
    expect(next.items.map((r) => r.commit_seq)).toEqual([6, 7, 8]);
    const all = await cliJson<{ items: { commit_seq: number }[]; total: number }>([
      'rows',
      'staged',
      big,
      '--all',
    ]);
    expect(all.total).toBe(1200);
    expect(all.items.map((r) => r.commit_seq)).toEqual(Array.from({ length: 1200 }, (_, i) => i + 1));
    const human = await cli(['rows', 'staged', big, '--all', '--limit', '500']);
    expect(human.stdout.trim().split('\n')).toHaveLength(1 + 1200 + 1);
  });

  it('approves with column choices, refuses a queued review without --claim, and a decided one', async () => {
    const r = await reviewOf(small);
    const show = await cli(['reviews', 'show', r.review_id]);
    expect(show.stdout).toMatch(
      /columns\nNAME\s+AFFINITY\s+KEY\s+NOT NULL\nid\s+INTEGER\s+1\s+yes\nmode\s+TEXT/,
    );

    const unclaimed = await cli(['reviews', 'approve', r.review_id]);
    expect(unclaimed.code).toBe(EXIT.conflict);
    expect(unclaimed.stderr).toMatch(/claim it before approving\n {2}claim it first: sluice reviews claim/);
    const typo = await cli(['reviews', 'approve', r.review_id, '--claim', '--mirror', 'mood:hvac_mode']);
    expect(typo.code).toBe(EXIT.usage);
    expect(typo.stderr).toMatch(/no column "mood"\n {2}its columns: id, mode/);

    const ok = await cli(['reviews', 'approve', r.review_id, '--claim', '--mirror', 'mode:hvac_mode']);
    expect(ok.code).toBe(EXIT.ok);
    expect(ok.stdout).toMatch(/claimed and approved review .* action_version 3: mode→hvac_mode/);

    const mirror = await waitFor(
      async () => {
        const m = await cli(['rows', 'mirror', small]);
        return m.code === 0 && /3 of 3 rows in edge_mirror_/.test(m.stdout) ? m.stdout : undefined;
      },
      { message: 'mirror rows through the CLI' },
    );
    expect(mirror).toMatch(/^id\s+hvac_mode\s+SOURCE_COMMIT_SEQ\n1\s+m1\s+1\n/);

    await waitFor(async () => (await reviewOf(small)).status === 'approved', {
      message: 'approval projected',
    });
    const again = await cli(['reviews', 'approve', r.review_id, '--json']);
    expect(again.code).toBe(EXIT.conflict);
    expect(JSON.parse(again.stdout).error.message).toMatch(/already approved/);
  });

  it('claims through a read token only with exit 5, and reports a stale version with exit 4', async () => {
    const r = await reviewOf(big);
    const ro = await cli(['reviews', 'claim', r.review_id], READER);
    expect(ro.code).toBe(EXIT.auth);
    expect(ro.stderr).toContain('PROJECT_CAN_MANAGE_DEVICES');
    const claimed = await cliJson<{ review: { action_version: number; status: string } }>([
      'reviews',
      'claim',
      r.review_id,
    ]);
    expect(claimed.review).toMatchObject({ status: 'in_review', action_version: 2 });
    const stale = await cli(['reviews', 'reject', r.review_id, '--reason', 'x', '--action-version', '1']);
    expect(stale.code).toBe(EXIT.conflict);
    expect(stale.stderr).toMatch(/now at action_version 2 \(in_review\)/);
    const rejected = await cli([
      'reviews',
      'reject',
      r.review_id,
      '--reason',
      'firmware bug',
      '--action-version',
      '2',
    ]);
    expect(rejected.code).toBe(EXIT.ok);
    expect(rejected.stdout).toMatch(/stays paused and keeps its staged rows/);
  });

  it('replays the audit trail and the state as of a time', async () => {
    const human = await cli(['audit', 'replay', small]);
    expect(human.code).toBe(EXIT.ok);
    expect(human.stdout).toMatch(/^\s+SEQ\s+OCCURRED AT\s+TYPE\s+ACTOR\s+WHAT/);
    expect(human.stdout).toMatch(/LineageRegistered\s+-\s+gw-cli \/ device_state \(rows\)/);
    expect(human.stdout).toMatch(/RowsStaged\s+-\s+3 rows staged \(schema_review\) commit_seq 1–3/);
    expect(human.stdout).toMatch(
      /SchemaReviewApproved\s+cli-ops\s+review \S+ approved \(v3\): id, mode→hvac_mode/,
    );
    const json = await cliJson<{ items: { type: string; seq: number }[] }>(['audit', 'replay', small]);
    expect(json.items[0]!.type).toBe('LineageRegistered');
    const claimedAt = json.items.find((e) => e.type === 'SchemaReviewClaimed') as unknown as {
      occurred_at: string;
    };
    const state = await cli(['audit', 'replay', small, '--as-of', claimedAt.occurred_at]);
    expect(state.stdout).toMatch(/status:\s+paused \(schema_review\)/);
    expect(state.stdout).toMatch(/reviews\nREVIEW\s+STATUS\s+VERSION\s+CLASS\n\S+\s+in_review\s+2/);
    expect((await cli(['audit', 'replay', small, '--as-of', 'soon'])).code).toBe(EXIT.usage);
  });

  it('lists controls and rejections, resets and deletes lineages', async () => {
    // The default filter is said, so "nothing" is never mistaken for "no controls at all".
    expect((await cli(['controls', 'ls'])).stdout).toBe(
      'no pending controls\n(showing pending controls; --status acknowledged or --status all for the others)\n',
    );
    expect((await cli(['controls', 'ls', '--status', 'all'])).stdout).toBe('no controls\n');
    expect((await cli(['rejections', 'ls'])).stdout).toBe('no rejections\n');
    // A healthy lineage: nothing to reset, and nothing recorded.
    const before = (await cliJson<{ items: unknown[] }>(['audit', 'replay', small])).items.length;
    const reset = await cli(['lineages', 'reset', small]);
    expect(reset.code).toBe(EXIT.ok);
    expect(reset.stdout).toBe(`lineage ${small} had nothing to reset\n`);
    expect((await cliJson<{ items: unknown[] }>(['audit', 'replay', small])).items.length).toBe(before);
    const unconfirmed = await cli(['lineages', 'delete', big]);
    expect(unconfirmed.code).toBe(EXIT.usage);
    expect(unconfirmed.stderr).toContain('re-run with --yes');
    const del = await cli(['lineages', 'delete', big, '--yes', '--reason', 'bench device retired']);
    expect(del.code).toBe(EXIT.ok);
    const trail = await cliJson<{ items: { type: string; data: { reason?: string } }[] }>([
      'audit',
      'replay',
      big,
    ]);
    expect(trail.items.at(-1)).toMatchObject({
      type: 'LineageDeleted',
      data: { reason: 'bench device retired' },
    });
    await waitFor(
      async () => (await cliJson<{ status: string }>(['lineages', 'show', big])).status === 'deleted',
      {
        message: 'deletion projected',
      },
    );
    expect((await cli(['lineages', 'delete', big, '--yes'])).code).toBe(EXIT.notFound);
  });

  it('shows and changes the policy, field by field', async () => {
    const before = await cliJson<Record<string, unknown>>(['policy', 'get']);
    expect(before).toMatchObject({ circuit_breaker_threshold: 5, verify_interval_minutes: 0 });
    const set = await cli(['policy', 'set', 'circuit_breaker_threshold=9', 'allow_additive_continue=true']);
    expect(set.code).toBe(EXIT.ok);
    expect(set.stdout).toMatch(/policy updated: circuit_breaker_threshold, allow_additive_continue/);
    expect(await cliJson<Record<string, unknown>>(['policy', 'get'])).toEqual({
      ...before,
      circuit_breaker_threshold: 9,
      allow_additive_continue: true,
    });
    const bad = await cli(['policy', 'set', 'circuit_breaker_threshold=-1']);
    expect(bad.code).toBe(EXIT.usage);
    expect((await cli(['policy', 'set', 'nonsense'])).code).toBe(EXIT.usage);
    expect((await cli(['policy', 'set', 'verify_interval_minutes=5'], READER)).code).toBe(EXIT.auth);
  });

  it('lists devices with when they were last seen, and lineages with their last batch', async () => {
    const devices = await cliJson<{ items: { device_name: string; last_seen_at: string | null }[] }>([
      'devices',
      'ls',
    ]);
    const gw = devices.items.find((d) => d.device_name === 'gw-cli');
    expect(gw?.last_seen_at).toMatch(/^\d{4}-\d\d-\d\dT/);
    const human = await cli(['devices', 'ls']);
    expect(human.stdout).toMatch(/LAST SEEN/);
    expect((await cli(['lineages', 'ls'])).stdout).toMatch(/LAST BATCH/);
    // The current schema was last seen with the lineage's last batch.
    const shown = await cliJson<{
      last_batch_at: string;
      current_schema_hash: string;
      schema_versions: { schema_hash: string; last_seen_at: string }[];
    }>(['lineages', 'show', small]);
    const current = shown.schema_versions.find((v) => v.schema_hash === shown.current_schema_hash);
    expect(current?.last_seen_at).toBe(shown.last_batch_at);
  });

  it('prints its version, and takes the API address from the settings', async () => {
    let out = '';
    const io = { out: async (t: string) => void (out += t), err: () => undefined };
    expect((await runCli(['--version'], io, {})).code).toBe(EXIT.ok);
    expect(out.trim()).toMatch(/^\d+\.\d+\.\d+/);
    // No --api: SLUICE_API_PORT (the API role's own setting) says where the API is.
    const port = new URL(api).port;
    out = '';
    const r = await runCli(['lineages', 'ls', '--json'], io, {
      SLUICE_API_PORT: port,
      SLUICE_TOKEN: MANAGER,
      SLUICE_PROJECT_ID: P,
    });
    expect(r.code).toBe(EXIT.ok);
    expect(JSON.parse(out).total).toBeGreaterThan(0);
    // SLUICE_API_URL wins over the port.
    out = '';
    const u = await runCli(['lineages', 'ls', '--json'], io, {
      SLUICE_API_URL: api,
      SLUICE_API_PORT: '1',
      SLUICE_TOKEN: MANAGER,
      SLUICE_PROJECT_ID: P,
    });
    expect(u.code).toBe(EXIT.ok);
  });

  it('projections status never creates a read store, and says what it reads', async () => {
    let err = '';
    const io = { out: async () => undefined, err: (t: string) => void (err += t) };
    const missing = join(tmpdir(), `sluice-nowhere-${uuidv7()}`, 'sluice.db');
    const r = await runCli(['projections', 'status'], io, {
      SLUICE_NATS_URL: nats.url,
      SLUICE_READ_STORE: `sqlite:${missing}`,
    });
    expect(r.code).toBe(EXIT.notFound);
    expect(err).toContain(`NATS ${nats.url}, read store sqlite:${missing}`);
    expect(err).toContain(`no read store at ${missing}`);
    expect(existsSync(missing)).toBe(false);
  });
});
