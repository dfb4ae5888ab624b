import http from 'node:http';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import type { ObjectStore } from '@nats-io/obj';
import Fastify, { type FastifyInstance } from 'fastify';
import { compress } from 'zstd-napi';
import { putUpload } from '../edge-agent/publish/upload';
import { readUploadRows } from '../infra/uploads/jsonl';
import { UPLOAD_BUCKET, openUploadStore } from '../infra/uploads/store';
import { type UploadClaims, uploadUrl } from '../infra/uploads/token';
import { startNats, type NatsServer } from '../tests/support/nats';
import { registerUploadRoutes } from './routes/uploads';

const SECRET = Buffer.from('upload-secret-for-tests-0123456789abcdef');
const NOW = new Date('2026-11-22T00:00:00.000Z');
let counter = 0;
const uploadId = () => `0190a000-0000-7000-8000-${String(++counter).padStart(12, '0')}`;

const claimsFor = (id: string, over: Partial<UploadClaims> = {}): UploadClaims => ({
  v: 1,
  device_key: 'acme/gw-1',
  lineage_id: '0190a000-0000-7000-8000-0000000000aa',
  source_table: 'device_state',
  upload_id: id,
  journal_epoch: '0190a000-0000-7000-8000-0000000000e1',
  first_commit_seq: 1,
  last_commit_seq: 100,
  row_count: 100,
  expires_at: '2026-11-22T00:15:00.000Z',
  ...over,
});

const jsonl = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) =>
    JSON.stringify({
      commit_seq: from + i,
      op: 'insert',
      pk: { id: from + i },
      row: { id: from + i, mode: 'm' },
    }),
  ).join('\n') + '\n';

async function* once(b: Buffer): AsyncGenerator<Buffer> {
  yield b;
}

/** A PUT of raw bytes (no compression by the client): for bodies that are not zstd on purpose. */
function rawPut(url: string, body: Buffer): Promise<{ status: number; body: { code?: string } }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: 'PUT', headers: { 'content-type': 'application/zstd' } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as { code?: string } }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

let nats: NatsServer;
let nc: NatsConnection;
let store: ObjectStore;
let app: FastifyInstance;
let base: string;

beforeAll(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
  store = await openUploadStore(nc);
  app = Fastify();
  await registerUploadRoutes(app, { store, secret: SECRET, now: () => NOW });
  base = await app.listen({ host: '127.0.0.1', port: 0 });
});
afterAll(async () => {
  await app?.close();
  await nc?.close();
  await nats?.stop();
});

/** Messages in the object store's stream: chunks of a refused upload must not linger. */
async function storedMessages(): Promise<number> {
  const jsm = await jetstreamManager(nc);
  return (await jsm.streams.info(`OBJ_${UPLOAD_BUCKET}`)).state.messages;
}

describe('upload endpoint', () => {
  it('stores a valid zstd JSONL upload, and a repeated PUT finds it stored', async () => {
    const id = uploadId();
    const url = uploadUrl(base, claimsFor(id), SECRET);
    const res = await putUpload(url, once(Buffer.from(jsonl(1, 100))));
    expect(res.status).toBe(201);
    const obj = await store.get(id);
    expect(obj?.info.metadata).toMatchObject({ device_key: 'acme/gw-1', row_count: '100' });
    const rows = [];
    for await (const group of readUploadRows(obj!.data, claimsFor(id))) rows.push(...group);
    expect(rows.map((r) => r.commit_seq)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    const again = await putUpload(url, once(Buffer.from(jsonl(1, 100))));
    expect(again).toMatchObject({ status: 200, body: { already_stored: true } });
  });

  it.each([
    [
      'an expired URL',
      (id: string) => uploadUrl(base, claimsFor(id, { expires_at: '2026-11-21T23:59:59.000Z' }), SECRET),
      'upload_url_expired',
    ],
    [
      'a token with altered claims',
      (id: string) => {
        const url = new URL(uploadUrl(base, claimsFor(id), SECRET));
        const [payload, mac] = url.searchParams.get('token')!.split('.');
        const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString()) as UploadClaims;
        const forged = Buffer.from(JSON.stringify({ ...claims, device_key: 'acme/gw-2' })).toString(
          'base64url',
        );
        url.searchParams.set('token', `${forged}.${mac}`);
        return url.toString();
      },
      'upload_url_invalid',
    ],
    [
      'a token minted with another secret',
      (id: string) => uploadUrl(base, claimsFor(id), Buffer.alloc(40, 7)),
      'upload_url_invalid',
    ],
    [
      'a token of another upload',
      (id: string) =>
        uploadUrl(base, claimsFor(uploadId()), SECRET).replace(/uploads\/[^?]+/, `uploads/${id}`),
      'upload_url_invalid',
    ],
    ['no token', (id: string) => `${base}/core/api/v1/uploads/${id}`, 'upload_url_invalid'],
  ])('refuses %s with 403 and stores nothing', async (_what, urlOf, code) => {
    const before = await storedMessages();
    const id = uploadId();
    const res = await putUpload(urlOf(id), once(Buffer.from(jsonl(1, 100))));
    expect(res).toMatchObject({ status: 403, body: { code } });
    expect(await store.info(id)).toBeNull();
    expect(await storedMessages()).toBe(before);
  });

  it.each([
    ['bytes that are not zstd', () => Buffer.from(jsonl(1, 100)), 'upload_invalid_zstd'],
    [
      'a truncated zstd frame',
      () => compress(Buffer.from(jsonl(1, 100))).subarray(0, 200),
      'upload_invalid_zstd',
    ],
    [
      'zstd of something that is not JSONL',
      () => compress(Buffer.from('hello\nworld\n')),
      'upload_invalid_jsonl',
    ],
    [
      'a line that is not a row change',
      () => compress(Buffer.from(`${jsonl(1, 99)}{"commit_seq":100,"op":"drop"}\n`)),
      'upload_invalid_jsonl',
    ],
    ['fewer rows than granted', () => compress(Buffer.from(jsonl(1, 99))), 'upload_row_count_mismatch'],
    ['a commit_seq outside the grant', () => compress(Buffer.from(jsonl(2, 101))), 'upload_content_invalid'],
    [
      'rows out of commit order',
      () => compress(Buffer.from(jsonl(51, 100) + jsonl(1, 50))),
      'upload_content_invalid',
    ],
  ])('refuses %s with 400 and a code, and stores nothing', async (_what, body, code) => {
    const before = await storedMessages();
    const id = uploadId();
    const res = await rawPut(uploadUrl(base, claimsFor(id), SECRET), body());
    expect(res).toMatchObject({ status: 400, body: { code } });
    expect(await store.info(id)).toBeNull();
    expect(await storedMessages()).toBe(before);
  });

  it('refuses a large invalid body early, without keeping its chunks', async () => {
    const before = await storedMessages();
    const id = uploadId();
    // 2 MiB of valid rows' zstd followed by garbage: chunks reach the store before the failure.
    const good = compress(Buffer.from(jsonl(1, 100)));
    const res = await rawPut(
      uploadUrl(base, claimsFor(id), SECRET),
      Buffer.concat([good, Buffer.alloc(2 * 1024 * 1024, 0x41)]),
    );
    expect(res.status).toBe(400);
    expect(await store.info(id)).toBeNull();
    expect(await storedMessages()).toBe(before);
  });
});
