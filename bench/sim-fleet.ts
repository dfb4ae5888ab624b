/**
 * Many simulated devices in one process, speaking the agent's wire protocol (no SQLite): one MQTT
 * 3.1.1 connection per device (persistent session, QoS 1), row batches of `sqlite_row_batch_v1`
 * on `<slug>/<device>/sync/rows/batch` with the device's own journal epoch and increasing
 * commit_seq, receipts on `<slug>/<device>/sync/ingest/receipt`. Like the agent: a batch goes out
 * at each flush tick (or earlier when full), at most `window` batches are unconfirmed per device,
 * and a batch is confirmed by its receipt only (re-sent with the same batch_id when overdue).
 *
 *   bench/sim-fleet.ts --url mqtt://… --devices N --prefix NAME [--slug bench] [--row-bytes 256]
 *     [--keys 20000] [--flush-ms 100] [--window 4]
 *
 * Each transaction has 1–5 rows: 0–4 rows of `items` (zipf keys) and the probe row (id 0),
 * whose `n` is the commit time in ms since the epoch (Date.now, strictly increasing per device):
 * a reader of the mirror sees commit → visible without talking to this process.
 *
 * stdin, one command a line: `rate R` (offered rows/s over all devices, 0 stops), `stop`.
 * stdout: `sim ready N` once every device is connected and its first batch (the probe row, with
 * the schema) is receipted; then every second a JSON line `{"stats":{…}}`.
 */
import { createInterface } from 'node:readline';
import mqtt, { type MqttClient } from 'mqtt';
import { uuidv7 } from 'uuidv7';
import { schemaHash } from '../domain/protocol/fingerprint';
import { rng } from '../tests/support/prng';
import { bodyFor, ITEMS_SCHEMA, TABLE, zipf } from './lib/data';

type Change = { commit_seq: number; op: 'insert' | 'update'; pk: { id: number }; row: Item };
type Item = { id: number; body: string; n: number };
type Inflight = {
  batchId: string;
  rows: number;
  payload: string;
  sentAt: number;
  confirmed: boolean;
};

function arg(name: string, fallback?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : fallback;
  if (v === undefined) throw new Error(`--${name} is required`);
  return v;
}

const URL_ = arg('url');
const DEVICES = Number(arg('devices'));
const PREFIX = arg('prefix');
const SLUG = arg('slug', 'bench');
const ROW_BYTES = Number(arg('row-bytes', '256'));
const KEYS = Number(arg('keys', '20000'));
const FLUSH_MS = Number(arg('flush-ms', '100'));
const WINDOW = Number(arg('window', '4'));
const MAX_ROWS = 4096;
const MAX_BYTES = 480 * 1024;
const RECEIPT_TIMEOUT_MS = 30_000;
const HASH = schemaHash(ITEMS_SCHEMA);
const BODY = bodyFor(ROW_BYTES);

const totals = {
  committed_rows: 0,
  committed_tx: 0,
  published_batches: 0,
  published_rows: 0,
  resent_batches: 0,
  receipted_batches: 0,
  receipted_rows: 0,
};

class SimDevice {
  readonly root: string;
  readonly epoch = uuidv7();
  client!: MqttClient;
  private seq = 0;
  private readonly seen = new Set<number>();
  private readonly pending: Change[] = [];
  readonly inflight: Inflight[] = [];
  private draining = false;
  private schemaSent = false;
  private lastMarker = 0;
  nextFlushAt: number;
  private readonly key: () => number;
  firstReceipt!: Promise<void>;
  private onFirstReceipt = () => undefined as void;

  constructor(
    readonly name: string,
    i: number,
  ) {
    this.root = `${SLUG}/${name}`;
    this.key = zipf(KEYS, 1.1, 1000 + i);
    this.nextFlushAt = Date.now() + Math.floor(rng(i + 1)() * FLUSH_MS);
  }

  async connect(): Promise<void> {
    this.firstReceipt = new Promise<void>((r) => (this.onFirstReceipt = r));
    this.client = await mqtt.connectAsync(URL_, {
      clientId: `sim-${this.name}`,
      clean: false,
      protocolVersion: 4,
      reconnectPeriod: 1000,
      connectTimeout: 30_000,
      keepalive: 60,
    });
    this.client.on('message', (_topic, payload) => this.onReceipt(payload));
    this.client.on('connect', () => this.resendAll());
    await this.client.subscribeAsync(`${this.root}/sync/ingest/receipt`, { qos: 1 });
  }

  /** One transaction: `count − 1` item rows and the probe row carrying the commit time. */
  commit(count: number, now: number): void {
    for (let i = 0; i < count - 1; i++) {
      const id = this.key();
      this.add({ id, body: BODY, n: this.seq + 1 });
    }
    this.lastMarker = Math.max(now, this.lastMarker + 1);
    this.add({ id: 0, body: BODY, n: this.lastMarker });
    totals.committed_rows += count;
    totals.committed_tx++;
  }

  private add(row: Item): void {
    const op = this.seen.has(row.id) ? 'update' : 'insert';
    this.seen.add(row.id);
    this.pending.push({ commit_seq: ++this.seq, op, pk: { id: row.id }, row });
  }

  pendingRows(): number {
    return this.pending.length;
  }

  flushTick(now: number): void {
    if (now < this.nextFlushAt) return;
    this.nextFlushAt = now + FLUSH_MS;
    if (this.pending.length > 0) this.draining = true;
    for (const b of this.inflight)
      if (!b.confirmed && now - b.sentAt >= RECEIPT_TIMEOUT_MS) {
        totals.resent_batches++;
        this.publish(b);
      }
    this.pump();
  }

  /** Build and send batches while the window has room (below the caps only when draining). */
  pump(): void {
    while (this.inflight.length < WINDOW && this.pending.length > 0) {
      if (!this.draining && this.pending.length < MAX_ROWS) return;
      const rowBytes = ROW_BYTES + 60;
      const take = Math.min(this.pending.length, MAX_ROWS, Math.max(1, Math.floor(MAX_BYTES / rowBytes)));
      const rows = this.pending.splice(0, take);
      const batchId = uuidv7();
      const payload = JSON.stringify({
        format_version: 1,
        capture_strategy: 'sqlite_row_batch_v1',
        batch_id: batchId,
        journal_epoch: this.epoch,
        source_table: TABLE,
        schema_hash: HASH,
        ...(this.schemaSent ? {} : { schema_columns: ITEMS_SCHEMA }),
        first_commit_seq: rows[0]!.commit_seq,
        last_commit_seq: rows[rows.length - 1]!.commit_seq,
        rows,
      });
      this.schemaSent = true;
      const b: Inflight = { batchId, rows: rows.length, payload, sentAt: 0, confirmed: false };
      this.inflight.push(b);
      totals.published_batches++;
      totals.published_rows += rows.length;
      this.publish(b);
    }
    if (this.pending.length === 0) this.draining = false;
  }

  private publish(b: Inflight): void {
    b.sentAt = Date.now();
    if (!this.client.connected) return; // re-sent on reconnect
    this.client.publish(`${this.root}/sync/rows/batch`, b.payload, { qos: 1 }, () => undefined);
  }

  private resendAll(): void {
    for (const b of this.inflight) if (!b.confirmed) this.publish(b);
  }

  private onReceipt(payload: Buffer): void {
    let r: { batch_id?: unknown; journal_epoch?: unknown };
    try {
      r = JSON.parse(payload.toString()) as typeof r;
    } catch {
      return;
    }
    const b = this.inflight.find((x) => x.batchId === r.batch_id);
    if (!b || b.confirmed) return;
    b.confirmed = true;
    totals.receipted_batches++;
    totals.receipted_rows += b.rows;
    while (this.inflight[0]?.confirmed) this.inflight.shift();
    this.onFirstReceipt();
    this.pump();
  }
}

async function main(): Promise<void> {
  const devices = Array.from({ length: DEVICES }, (_, i) => new SimDevice(`${PREFIX}-${i}`, i));
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await Promise.all(devices.map((d) => d.client?.endAsync().catch(() => undefined)));
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());

  // Connect a few at a time: a thousand CONNECTs at once time out on a busy broker.
  let next = 0;
  await Promise.all(
    Array.from({ length: 20 }, async () => {
      while (next < devices.length) {
        const d = devices[next++]!;
        await d.connect();
        d.commit(1, Date.now());
        d.flushTick(Number.MAX_SAFE_INTEGER);
      }
    }),
  );
  await Promise.all(devices.map((d) => d.firstReceipt));
  for (const d of devices) d.nextFlushAt = Date.now() + Math.floor(Math.random() * FLUSH_MS);
  console.log(`sim ready ${devices.length}`);

  // Offered load: every 5 ms, the transactions due by now, each on a random device.
  let rate = 0;
  let owed = 0;
  let last = performance.now();
  const random = rng(7);
  const load = setInterval(() => {
    const t = performance.now();
    owed += (rate * (t - last)) / 1000;
    last = t;
    const now = Date.now();
    while (owed >= 1) {
      const count = 1 + Math.floor(random() * 5);
      devices[Math.floor(random() * devices.length)]!.commit(count, now);
      owed -= count;
    }
    for (const d of devices) d.flushTick(now);
  }, 5);
  const stats = setInterval(() => {
    let pending = 0;
    let inflight = 0;
    for (const d of devices) {
      pending += d.pendingRows();
      inflight += d.inflight.length;
    }
    console.log(
      JSON.stringify({
        stats: { t: Date.now(), rate, ...totals, pending_rows: pending, inflight_batches: inflight },
      }),
    );
  }, 1000);

  const input = createInterface({ input: process.stdin });
  input.on('close', () => void stop()); // the bench went away
  input.on('line', (line) => {
    const [cmd, v] = line.trim().split(/\s+/);
    if (cmd === 'rate') {
      rate = Number(v);
      owed = 0;
      last = performance.now();
    } else if (cmd === 'stop') {
      clearInterval(load);
      clearInterval(stats);
      void stop();
    }
  });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
