import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { type DemoApp, runDemoApp } from '../../edge-agent/demo/demo-app';
import type { CursorPage, KeysetPage, Page } from '../../projections/store/page';
import { startNats, type NatsServer } from '../support/nats';
import { tempDir } from '../support/proc';
import {
  type AgentProcess,
  type CloudProcess,
  ROOT,
  TEST_PROJECT,
  TEST_TOKEN,
  getJson,
  postJson,
  startAgentProcess,
  startCloudProcess,
} from '../support/stack';
import { waitFor } from '../support/wait';

type Lineage = {
  lineage_id: string;
  device_name: string;
  source_table: string;
  status: string;
  pause_reasons: string[];
  staged_rows: number;
  materialized_rows: number;
};
type Review = {
  review_id: string;
  lineage_id: string;
  status: string;
  action_version: number;
  schema_columns: { columns: { name: string }[] } | null;
};
type Staged = { commit_seq: number; op: string; row: Record<string, unknown> | null; reason: string };
type MirrorRow = { key: Record<string, unknown>; row: Record<string, unknown>; source_commit_seq: number };
type Mirror = CursorPage<MirrorRow> & { table: string | null; columns: { name: string }[] };
type CommandBody = {
  lineage_id: string;
  events: { type: string }[];
  review?: { status: string; action_version: number };
};

/** `bin/sluice …` as an operator runs it; resolves with its exit code and output. */
function sluice(
  args: string[],
  apiUrl: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(ROOT, 'bin', 'sluice'), args, {
      env: {
        ...process.env,
        SLUICE_API_URL: apiUrl,
        SLUICE_TOKEN: TEST_TOKEN,
        SLUICE_PROJECT_ID: TEST_PROJECT,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * The README's 5-minute tour over real HTTP, against the whole stack: an application that keeps
 * writing, its agent, and `sluice all`. Each step checks the answer the README promises; the
 * second table is then approved through the `sluice` CLI, whose exit codes scripts rely on.
 */
describe('the 5-minute tour', () => {
  let nats: NatsServer;
  let cloud: CloudProcess;
  let agent: AgentProcess;
  let demo: DemoApp;
  let db: Database.Database;
  const appDb = join(tempDir('tour'), 'app.db');
  const device = 'gw-tour';

  beforeAll(async () => {
    nats = await startNats();
    cloud = await startCloudProcess({ natsUrl: nats.url, mqttUrl: nats.mqttUrl });
    // The demo application keeps changing device_state (ids 1-4) and order_events.
    demo = runDemoApp(appDb, { intervalMs: 100 });
    db = new Database(appDb);
    db.pragma('busy_timeout = 5000');
    // A row of our own the demo never touches, to follow one change end to end.
    db.prepare(
      "INSERT INTO device_state (id, mode, setpoint, updated_at) VALUES (100, 'tour-before', 20, 'now')",
    ).run();
    agent = startAgentProcess({
      mqttUrl: nats.mqttUrl,
      sourceDb: appDb,
      device,
      extraYaml: '  snapshot_on_first_run: true',
    });
  });
  afterAll(async () => {
    demo?.stop();
    db?.close();
    await agent?.stop();
    await cloud?.stop();
    await nats?.stop();
  });

  const logs = () => `cloud: ${cloud.output().slice(-1500)}\nagent: ${agent.output().slice(-1000)}`;
  const lineageOf = async (table: string) => {
    const r = await getJson<Page<Lineage>>(`${cloud.base}/lineages?device_id=${device}`);
    return r.body.items.find((l) => l.source_table === table);
  };
  const mirrorRow = async (lineage: string, id: number) => {
    const m = await getJson<Mirror>(`${cloud.base}/lineages/${lineage}/mirror-rows?limit=500`);
    return m.body.items.find((r) => r.key.id === id);
  };

  it('walks from a paused lineage to a live mirror', async () => {
    // 1. Both tables are paused for schema review while the device keeps sending.
    const lineages = await waitFor(
      async () => {
        const [a, b] = await Promise.all([lineageOf('device_state'), lineageOf('order_events')]);
        return a && b && a.staged_rows >= 5 && b.staged_rows >= 1 ? { state: a, orders: b } : undefined;
      },
      { timeoutMs: 30_000, message: () => `both demo lineages with staged rows (${logs()})` },
    );
    for (const l of Object.values(lineages))
      expect(l).toMatchObject({ status: 'paused', pause_reasons: ['schema_review'] });
    const L = lineages.state.lineage_id;

    // 2. The staged rows, in commit order.
    const staged = await getJson<CursorPage<Staged>>(`${cloud.base}/lineages/${L}/staged-rows?limit=5`);
    expect(staged.status).toBe(200);
    expect(staged.body.items).toHaveLength(5);
    const seqs = staged.body.items.map((r) => r.commit_seq);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
    for (const r of staged.body.items) expect(r.reason).toBe('schema_review');
    expect(staged.body.next_cursor).toEqual(expect.any(String));

    // 3. Claim the review, quoting its action_version; a repeated key answers the same.
    const queued = await getJson<Page<Review>>(`${cloud.base}/schema-reviews?status=queued&lineage_id=${L}`);
    const R = queued.body.items[0]!.review_id;
    const review = await getJson<Review>(`${cloud.base}/schema-reviews/${R}`);
    expect(review.body).toMatchObject({ status: 'queued', action_version: 1 });
    expect(review.body.schema_columns?.columns.map((c) => c.name).sort()).toEqual([
      'id',
      'mode',
      'setpoint',
      'updated_at',
    ]);
    const claim = await postJson<CommandBody>(
      `${cloud.base}/schema-reviews/${R}/claim`,
      { action_version: 1 },
      { idempotencyKey: 'tour-claim' },
    );
    expect(claim.status).toBe(200);
    expect(claim.body.review).toMatchObject({ status: 'in_review', action_version: 2 });
    const again = await postJson(
      `${cloud.base}/schema-reviews/${R}/claim`,
      { action_version: 1 },
      {
        idempotencyKey: 'tour-claim',
      },
    );
    expect(again).toEqual(claim);

    // 4. Approve, renaming one column.
    const approve = await postJson<CommandBody>(
      `${cloud.base}/schema-reviews/${R}/approve`,
      {
        action_version: 2,
        column_actions: [{ column: 'mode', action: 'mirror', mirror_column_name: 'hvac_mode' }],
      },
      { idempotencyKey: 'tour-approve' },
    );
    expect(approve.status).toBe(200);
    expect(approve.body.events.map((e) => e.type)).toContain('SchemaReviewApproved');

    // 5. The mirror fills from staging, and the lineage is active.
    const before = await waitFor(
      async () => {
        const row = await mirrorRow(L, 100);
        return row?.row.hvac_mode === 'tour-before' ? row : undefined;
      },
      { timeoutMs: 30_000, message: () => `row 100 in the mirror (${logs()})` },
    );
    const mirror = await getJson<Mirror>(`${cloud.base}/lineages/${L}/mirror-rows`);
    expect(mirror.body.table).toMatch(/^edge_mirror_[0-9a-f]{8}_device_state$/);
    expect(mirror.body.columns.map((c) => c.name)).toEqual(expect.arrayContaining(['id', 'hvac_mode']));
    expect(mirror.body.columns.map((c) => c.name)).not.toContain('mode');
    const detail = await waitFor(
      async () => {
        const d = await getJson<Lineage & { replay: { state: string } | null }>(
          `${cloud.base}/lineages/${L}`,
        );
        return d.body.status === 'active' && d.body.materialized_rows > 0 ? d.body : undefined;
      },
      { message: 'lineage active with materialized rows' },
    );
    expect(detail.pause_reasons).toEqual([]);

    // ...and a live change arrives: the application updates the row, the mirror follows.
    db.prepare("UPDATE device_state SET mode = 'tour-live' WHERE id = 100").run();
    const after = await waitFor(
      async () => {
        const row = await mirrorRow(L, 100);
        return row?.row.hvac_mode === 'tour-live' ? row : undefined;
      },
      { timeoutMs: 30_000, message: () => `the live change of row 100 (${logs()})` },
    );
    expect(after.source_commit_seq).toBeGreaterThan(before.source_commit_seq);

    // The audit trail tells who did what, and the state at the time of the claim.
    const trail = await getJson<
      KeysetPage<{ type: string; occurred_at: string; metadata: { actor?: string } }>
    >(`${cloud.base}/lineages/${L}/events?limit=500`);
    const claimed = trail.body.items.find((e) => e.type === 'SchemaReviewClaimed')!;
    expect(claimed.metadata.actor).toBe('e2e');
    const asOf = await getJson<{ state: { reviews: { review_id: string; status: string }[] } }>(
      `${cloud.base}/lineages/${L}/events?as_of=${encodeURIComponent(claimed.occurred_at)}`,
    );
    expect(asOf.body.state.reviews.find((r) => r.review_id === R)?.status).toBe('in_review');

    // The second table, through the CLI: a stale version is a conflict (4), then approve for real.
    const O = lineages.orders.lineage_id;
    const R2 = (await getJson<Page<Review>>(`${cloud.base}/schema-reviews?lineage_id=${O}`)).body.items[0]!
      .review_id;
    const [stale, missing] = await Promise.all([
      sluice(['reviews', 'approve', R2, '--claim', '--action-version', '7', '--json'], cloud.apiUrl),
      sluice(['lineages', 'show', '0190a000-0000-7000-8000-0000000000ff'], cloud.apiUrl),
    ]);
    expect(stale.code).toBe(4);
    expect(JSON.parse(stale.stdout)).toMatchObject({ ok: false, error: { code: 'stale_action_version' } });
    expect(stale.stderr).toContain('now at action_version 1');
    expect(missing.code).toBe(3);
    const ok = await sluice(
      ['reviews', 'approve', R2, '--claim', '--ignore', 'note', '--json'],
      cloud.apiUrl,
    );
    expect({ code: ok.code, stderr: ok.stderr }).toEqual({ code: 0, stderr: '' });
    expect(JSON.parse(ok.stdout)).toMatchObject({
      lineage_id: O,
      review: { status: 'approved', action_version: 3 },
      claim: { review: { status: 'in_review', action_version: 2 } },
    });
    const orders = await waitFor(
      async () => {
        const m = await getJson<Mirror>(`${cloud.base}/lineages/${O}/mirror-rows?count=true`);
        return m.body.total > 0 ? m.body : undefined;
      },
      { timeoutMs: 30_000, message: 'order_events mirror rows' },
    );
    expect(orders.columns.map((c) => c.name).sort()).toEqual(['line', 'order_id', 'qty']);

    // Operators watch it all on /readyz and /metrics.
    const ready = await fetch(`${cloud.apiUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ok: true, checks: { projections: { ok: true } } });
    const wanted = [
      /sluice_uplinks_total\{kind="rows"\} \d+/,
      /sluice_rows_total\{disposition="staged"\} \d+/,
      /sluice_lineage_pauses_total\{reason="schema_review"\} 2/,
      /sluice_projection_lag\{projection="lineages"\} \d+/,
      /sluice_lineages\{status="active"\} 2/,
      /^sluice_staged_rows \d+$/m,
    ];
    // The lineages projection follows the mirror's on its own: wait until it has the approval too.
    await waitFor(
      async () => {
        const text = await (await fetch(`${cloud.apiUrl}/metrics`)).text();
        return wanted.every((m) => m.test(text)) || undefined;
      },
      { message: 'the metrics of the tour' },
    );

    // 7. A row written back to the device: cloud_authoritative, then a write of a new key.
    const authority = await postJson(`${cloud.base}/lineages/${L}/authority`, {
      mode: 'cloud_authoritative',
    });
    expect(authority.status).toBe(200);
    const D = (await getJson<{ device_id: string }>(`${cloud.base}/lineages/${L}`)).body.device_id;
    const W = `${cloud.base.replace(/\/edge$/, '')}/devices/${D}/edge/state-tables/${L}/rows`;
    const write = await postJson<{ cloud_version: number }>(W, {
      rows: [{ pk: { id: 50 }, values: { mode: 'eco', setpoint: 21 } }],
    });
    expect(write.status).toBe(200);
    expect(write.body.cloud_version).toBeGreaterThan(0);
    const landed = await waitFor(
      async () => {
        const row = await mirrorRow(L, 50);
        return row?.row.hvac_mode === 'eco' ? row : undefined;
      },
      { timeoutMs: 30_000, message: () => `the written row in the mirror (${logs()})` },
    );
    // A REAL column holds 21.0: the API says REAL, not the INTEGER 21 (docs/wire-values.md).
    expect(landed.row).toMatchObject({ id: 50, hvac_mode: 'eco', setpoint: { $real: '21' } });
    expect(db.prepare('SELECT mode, setpoint FROM device_state WHERE id = 50').get()).toEqual({
      mode: 'eco',
      setpoint: 21,
    });
    const cloudRow = await waitFor(
      async () => {
        const r = await getJson<Page<{ pk: { id: number }; status: string; values: unknown }>>(W);
        return r.body.items.find((i) => i.pk.id === 50 && i.status === 'applied');
      },
      { message: 'the cloud row applied' },
    );
    expect(cloudRow.values).toEqual({ mode: 'eco', setpoint: 21 });
  });
});
