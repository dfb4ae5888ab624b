import Database from 'better-sqlite3';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { type BrowserContext, type Page, chromium } from 'playwright-core';
import { type DemoApp, runDemoApp } from '../../edge-agent/demo/demo-app';
import { startNats, type NatsServer } from '../support/nats';
import { tempDir } from '../support/proc';
import {
  type AgentProcess,
  type CloudProcess,
  READ_TOKEN,
  ROOT,
  TEST_TOKEN,
  getJson,
  postJson,
  startAgentProcess,
  startCloudProcess,
} from '../support/stack';

/** Every wait in a browser step ends by this deadline, never after a fixed sleep. */
const STEP_MS = 45_000;
const IMG = join(ROOT, 'docs', 'img');
const CHROMIUM = process.env.SLUICE_CHROMIUM ?? '/usr/bin/chromium';

type Review = { review_id: string; status: string; action_version: number };

/**
 * The operator console in a real browser (Debian's chromium, headless) against the whole stack:
 * nats-server with its MQTT listener, `sluice all` with a SQLite read store, the demo application
 * and its agent. The README tour is done through the console, then the permissions of a read-only
 * token, the audit trail, and a stale action_version.
 */
describe('the operator console', () => {
  let nats: NatsServer;
  let cloud: CloudProcess;
  let agent: AgentProcess;
  let demo: DemoApp;
  let db: Database.Database;
  let browser: BrowserContext;
  let page: Page;
  const profile = tempDir('chromium');
  const appDb = join(tempDir('console'), 'app.db');
  const device = 'gw-console';

  beforeAll(async () => {
    nats = await startNats();
    cloud = await startCloudProcess({ natsUrl: nats.url, mqttUrl: nats.mqttUrl });
    demo = runDemoApp(appDb, { intervalMs: 200 });
    db = new Database(appDb);
    db.pragma('busy_timeout = 5000');
    agent = startAgentProcess({
      mqttUrl: nats.mqttUrl,
      sourceDb: appDb,
      device,
      extraYaml: '  snapshot_on_first_run: true',
    });
    // A fresh profile directory; each page (tab) has its own sessionStorage, so its own sign-in.
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1360, height: 860 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    browser.setDefaultTimeout(STEP_MS);
    page = await browser.newPage();
  });
  afterAll(async () => {
    await browser?.close();
    rmSync(profile, { recursive: true, force: true });
    demo?.stop();
    db?.close();
    await agent?.stop();
    await cloud?.stop();
    await nats?.stop();
  });

  const logs = () => `cloud: ${cloud.output().slice(-1500)}\nagent: ${agent.output().slice(-1000)}`;

  async function signIn(p: Page, token: string): Promise<void> {
    await p.goto(`${cloud.apiUrl}/console`);
    await p.getByLabel('API token').fill(token);
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.getByRole('heading', { name: 'Lineages' }).waitFor();
  }

  const lineageRow = (p: Page, table: string) =>
    p.getByRole('table', { name: 'Lineages' }).getByRole('row').filter({ hasText: table });

  async function lineageId(table: string): Promise<string> {
    const r = await getJson<{ items: { lineage_id: string; source_table: string }[] }>(
      `${cloud.base}/lineages?device_id=${device}`,
    );
    return r.body.items.find((l) => l.source_table === table)!.lineage_id;
  }

  async function screenshot(p: Page, name: string): Promise<void> {
    mkdirSync(IMG, { recursive: true });
    await p.screenshot({ path: join(IMG, name) });
  }

  it('does the README tour: sign in, the paused lineage, its review, approve with a rename, mirror rows', async () => {
    const served = await fetch(`${cloud.apiUrl}/console/`);
    expect(served.status).toBe(200);
    expect(served.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(await (await fetch(`${cloud.apiUrl}/console/lineages/anything`)).text()).toContain('id="app"');

    await signIn(page, TEST_TOKEN);
    const signedIn = page.getByRole('region', { name: 'Signed in' });
    await signedIn.getByText('operator', { exact: true }).waitFor();
    await signedIn.getByText('PROJECT_CAN_MANAGE_DEVICES').waitFor();

    // Both demo tables appear by themselves (the list refreshes), paused for schema review.
    for (const table of ['device_state', 'order_events']) {
      await lineageRow(page, table)
        .getByText('schema review')
        .waitFor({ timeout: 60_000 })
        .catch((e) => {
          throw new Error(`${String(e)}\n${logs()}`);
        });
    }
    await lineageRow(page, 'device_state').getByText('paused').waitFor();
    await screenshot(page, 'console-lineages.png');

    // The lineage says why it is paused and where to go next.
    await lineageRow(page, 'device_state').getByRole('link', { name: 'device_state' }).click();
    await page.getByRole('heading', { name: /device_state on gw-console/ }).waitFor();
    await page.getByRole('status', { name: 'Pause reasons' }).getByText('waits for a person').waitFor();
    await page.getByRole('figure', { name: 'Staged rows' }).waitFor();
    await page.getByRole('link', { name: 'Open the schema review' }).click();

    // The review: every column, new against nothing approved; mode renamed in the editor.
    const columns = page.getByRole('table', { name: 'Columns and actions' });
    await columns.waitFor();
    for (const c of ['id', 'mode', 'setpoint', 'updated_at']) {
      await columns
        .getByRole('row', { name: new RegExp(`^${c} `) })
        .getByText('new', { exact: true })
        .waitFor();
    }
    await page.getByText('Nothing is approved for this lineage yet').waitFor();
    await page.getByLabel('Action for mode').selectOption('rename');
    await page.getByLabel('Mirror name for mode').fill('hvac_mode');
    await page.getByRole('button', { name: 'Claim and approve' }).click();
    await page.getByText('Approved: the mirror table is provisioned').waitFor();

    // The mirror rows carry the renamed column.
    await page.getByRole('link', { name: 'See the lineage and its mirror rows' }).click();
    const mirror = page.getByRole('table', { name: 'Mirror rows' });
    await mirror.getByRole('columnheader', { name: 'hvac_mode' }).waitFor();
    await mirror.getByRole('row').nth(1).getByRole('cell').first().waitFor();
    expect(await mirror.getByRole('columnheader', { name: 'mode', exact: true }).count()).toBe(0);
    await page.getByText('Active: batches flow into the mirror').waitFor();
  });

  it('offers a read-only token no approval, and shows the API refusing a forced one', async () => {
    const p = await browser.newPage();
    try {
      await signIn(p, READ_TOKEN);
      await p.getByRole('region', { name: 'Signed in' }).getByText('read-only').waitFor();
      await lineageRow(p, 'order_events').getByRole('link', { name: 'order_events' }).click();
      await p.getByRole('link', { name: 'Open the schema review' }).click();

      const approve = p.getByRole('button', { name: 'Claim and approve' });
      await approve.waitFor();
      expect(await approve.isDisabled()).toBe(true);
      expect(await approve.getAttribute('title')).toContain('read-only');

      // Forced: the button enabled by hand; the API answers 403 and the page says so.
      await approve.evaluate((b) => b.removeAttribute('disabled'));
      await approve.click();
      const alert = p.getByRole('alert');
      await alert.getByText('Not allowed').waitFor();
      await alert.getByText('forbidden').waitFor();
      await alert.getByText(/cannot change anything/).waitFor();
      const review = await getJson<{ items: Review[] }>(
        `${cloud.base}/schema-reviews?lineage_id=${await lineageId('order_events')}`,
      );
      expect(review.body.items[0]).toMatchObject({ status: 'queued', action_version: 1 });
    } finally {
      await p.close();
    }
  });

  it('shows the audit timeline and the state as of a chosen time', async () => {
    const L = await lineageId('device_state');
    await page.goto(`${cloud.apiUrl}/console/#/lineages/${L}`);
    await page.getByRole('link', { name: 'Audit trail' }).click();
    const events = page.getByRole('list', { name: 'Events' });
    const claimed = events.getByRole('listitem').filter({ hasText: 'SchemaReviewClaimed' });
    await claimed.getByText('by e2e').waitFor();
    await events.getByRole('listitem').filter({ hasText: 'SchemaReviewApproved' }).waitFor();

    // The state right after the claim: its review in review, the lineage still paused.
    await claimed.getByRole('button', { name: 'State after this event' }).click();
    const state = page.getByRole('region', { name: 'State at the chosen time' });
    await state.getByText('in review', { exact: true }).waitFor();
    await state.getByText('paused', { exact: true }).waitFor();
    await state.getByText('schema_review', { exact: true }).waitFor();
    await page.getByLabel('Show row batches').uncheck();
    await events
      .getByRole('listitem')
      .filter({ hasText: 'RowsStaged' })
      .first()
      .waitFor({ state: 'detached' });
    await page.evaluate('window.scrollTo(0, 0)');
    await screenshot(page, 'console-audit.png');

    // A time picked by hand: just before the lineage's first event, nothing was registered yet.
    const first = (
      await getJson<{ items: { occurred_at: string }[] }>(`${cloud.base}/lineages/${L}/events?limit=1`)
    ).body.items[0]!.occurred_at;
    const before = new Date(Date.parse(first) - 1000).toISOString().replace(/Z$/, '');
    await page.getByLabel('As of (UTC)').fill(before);
    await page.getByRole('button', { name: 'Show state' }).click();
    await state.getByText('unregistered', { exact: true }).waitFor();
    await state.getByText('0 events folded').waitFor();
  });

  it('explains a stale action_version and refreshes the review', async () => {
    const L = await lineageId('device_state');
    // A new column on the device: an additive schema, a second review of the lineage.
    db.exec('ALTER TABLE device_state ADD COLUMN note TEXT');
    db.prepare("UPDATE device_state SET note = 'after the change' WHERE id = 1").run();
    await page.goto(`${cloud.apiUrl}/console/#/lineages/${L}`);
    await page.getByRole('link', { name: 'Open the schema review' }).click({ timeout: 60_000 });

    // The diff against the approved schema, the editor prefilled with the rename in force.
    const columns = page.getByRole('table', { name: 'Columns and actions' });
    await columns.getByRole('row').filter({ hasText: 'note' }).getByText('added').waitFor();
    await page.getByText(/1 added, 0 removed/).waitFor();
    expect(await page.getByLabel('Action for mode').inputValue()).toBe('rename');
    expect(await page.getByLabel('Mirror name for mode').inputValue()).toBe('hvac_mode');
    await screenshot(page, 'console-review.png');

    // Someone else claims it first; this page still quotes action_version 1.
    const R = /#\/reviews\/([0-9a-f-]{36})/.exec(page.url())![1]!;
    const other = await postJson<{ review: Review }>(`${cloud.base}/schema-reviews/${R}/claim`, {
      action_version: 1,
    });
    expect(other.body.review).toMatchObject({ status: 'in_review', action_version: 2 });
    await page.getByRole('button', { name: 'Claim and approve' }).click();
    const stale = page.getByRole('status').filter({ hasText: 'Someone acted on this review' });
    await stale.getByText(/you quoted action_version 1, it is now at 2 \(in review\)/).waitFor();

    // Refreshed: in review at 2, and the approval goes through.
    await page
      .getByRole('heading', { name: /Schema review of device_state/ })
      .getByText('in review')
      .waitFor();
    await page.getByRole('button', { name: 'Approve', exact: true }).click();
    await page.getByText('Approved: the mirror table is provisioned').waitFor();
    const done = await getJson<Review>(`${cloud.base}/schema-reviews/${R}`);
    expect(done.body).toMatchObject({ status: 'approved', action_version: 3 });
  });
});
