import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { check, hostileJson, prototypeKeys, timeoutFor, uuid7 } from '../../tests/support/fuzz';
import { controlSchema, parseJsonPayload } from '../../domain/protocol/contracts';
import { compareIssued } from './handler';
import { signControl, verifyControl } from './signature';

/**
 * The agent's decoding of downlinks: any payload is parsed, shaped and verified without a throw,
 * and no change of any field of a signed control (or of the signature) still verifies.
 */
const key = generateKeyPairSync('ed25519');
const other = generateKeyPairSync('ed25519');
const PROTO = prototypeKeys();
afterEach(() => expect(prototypeKeys()).toEqual(PROTO));

const control = fc.record({
  control_id: uuid7,
  control_kind: fc.constantFrom('pause_lineage', 'resume_lineage', 'state_write', 'url_grant'),
  source_table: fc.string({ minLength: 1, maxLength: 20 }),
  server_watermark: fc.nat(),
  reason: fc.string({ maxLength: 20 }),
  issued_at: fc.integer({ min: 0, max: 4e12 }).map((ms) => new Date(ms).toISOString()),
  root_topic: fc.constantFrom('acme/gw-01', '/solo', 'acme/gw-02'),
});

describe('downlink controls', () => {
  it(
    'refuse every change of a signed control, a re-signing by another key, and any garbage',
    () => {
      const mutation = fc.record({
        field: fc.constantFrom(
          'control_id',
          'control_kind',
          'source_table',
          'server_watermark',
          'reason',
          'issued_at',
          'root_topic',
          'extra',
          'signature',
        ),
        value: hostileJson,
      });
      check(fc.tuple(control, mutation, fc.boolean()), 0.6, ([c, m, resign]) => {
        const signed = signControl(c, key.privateKey);
        expect(verifyControl(signed, key.publicKey)).toBe(true);
        const changed: Record<string, unknown> = { ...signed, [m.field]: m.value };
        const same =
          JSON.stringify(changed[m.field]) === JSON.stringify((signed as Record<string, unknown>)[m.field]);
        if (!same) expect(verifyControl(changed, key.publicKey)).toBe(false);
        if (resign) expect(verifyControl(signControl(c, other.privateKey), key.publicKey)).toBe(false);
      });
    },
    timeoutFor(0.6),
  );

  it(
    'parse and shape any bytes without throwing',
    () => {
      const bytes = fc.oneof(
        fc.uint8Array({ maxLength: 300 }),
        hostileJson.map((v) => Buffer.from(JSON.stringify(v) ?? '')),
      );
      check(bytes, 0.3, (b) => {
        const parsed = parseJsonPayload(b);
        if (!parsed.ok) return;
        const shaped = controlSchema.safeParse(parsed.value);
        if (typeof parsed.value === 'object' && parsed.value !== null)
          expect(verifyControl(parsed.value as Record<string, unknown>, key.publicKey)).toBe(false);
        if (shaped.success) expect(typeof shaped.data.control_id).toBe('string');
      });
    },
    timeoutFor(0.3),
  );

  it(
    'order controls totally by issued_at, then control_id',
    () => {
      const stamp = fc.record({
        issuedAt: fc.integer({ min: 0, max: 2000 }).map((ms) => new Date(ms).toISOString()),
        controlId: uuid7,
      });
      check(fc.tuple(stamp, stamp, stamp), 0.1, ([a, b, c]) => {
        expect(Math.sign(compareIssued(a, b))).toBe(-Math.sign(compareIssued(b, a)));
        expect(compareIssued(a, a)).toBe(0);
        if (compareIssued(a, b) <= 0 && compareIssued(b, c) <= 0)
          expect(compareIssued(a, c)).toBeLessThanOrEqual(0);
      });
    },
    timeoutFor(0.1),
  );
});
