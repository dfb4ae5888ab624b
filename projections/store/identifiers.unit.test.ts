import {
  device8,
  IdentifierError,
  isSafeIdentifier,
  MAX_IDENT_BYTES,
  mirrorTableName,
  physicalColumnName,
  quoteIdent,
  sanitizeName,
  telemetryTableName,
  truncateUtf8,
} from './identifiers';

const DEVICE = '0190f3a2-7b1c-7def-8abc-123456789abc';
const HOSTILE = [
  'a"b',
  '"; DROP TABLE x; --',
  "'); DELETE FROM edge_table_lineages; --",
  'semi;colon',
  'ÜberTäble',
  '日本語のテーブル',
  '🚀 rockets',
  'x'.repeat(200),
  'My-Table',
  'my_table',
  'tab\tle',
];
const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

describe('quoteIdent', () => {
  it('wraps in double quotes and doubles inner quotes', () => {
    expect(quoteIdent('plain')).toBe('"plain"');
    expect(quoteIdent('a"b')).toBe('"a""b"');
    expect(quoteIdent('"; DROP TABLE x; --')).toBe('"""; DROP TABLE x; --"');
  });

  it('refuses names either database would mangle', () => {
    for (const bad of ['', 'nul\u0000byte', 'line\nbreak', 'x'.repeat(64), 'é'.repeat(32), '\ud800lone']) {
      expect(() => quoteIdent(bad)).toThrow(IdentifierError);
    }
    expect(quoteIdent('é'.repeat(31))).toBe(`"${'é'.repeat(31)}"`);
  });
});

describe('table names', () => {
  it('uses the first 8 hex digits of the device id, or a hash of a non-hex id', () => {
    expect(device8(DEVICE)).toBe('0190f3a2');
    expect(device8('warehouse-gw-01')).toMatch(/^[0-9a-f]{8}$/);
    expect(device8('WAREHOUSE')).not.toBe(device8('warehouse'));
  });

  it('keeps a clean name as it is', () => {
    expect(mirrorTableName(DEVICE, 'device_state')).toBe('edge_mirror_0190f3a2_device_state');
    expect(telemetryTableName(DEVICE, 'temps')).toBe('edge_ts_0190f3a2_temps');
  });

  it('sanitises to [a-z0-9_], stays within 63 bytes, and never maps two tables to one name', () => {
    const names = HOSTILE.map((t) => mirrorTableName(DEVICE, t));
    for (const n of names) {
      expect(n).toMatch(/^edge_mirror_0190f3a2_[a-z0-9_]+$/);
      expect(bytes(n)).toBeLessThanOrEqual(MAX_IDENT_BYTES);
      expect(quoteIdent(n)).toBe(`"${n}"`);
    }
    expect(new Set(names).size).toBe(names.length);
    expect(sanitizeName('My-Table')).toBe('my_table');
    expect(mirrorTableName(DEVICE, 'My-Table')).not.toBe(mirrorTableName(DEVICE, 'my_table'));
    const long = mirrorTableName(DEVICE, 'x'.repeat(200));
    expect(long).not.toBe(mirrorTableName(DEVICE, 'x'.repeat(199)));
  });

  it('derives a different name per generation and per salt', () => {
    const base = mirrorTableName(DEVICE, 'device_state');
    expect(mirrorTableName(DEVICE, 'device_state', 2)).not.toBe(base);
    expect(mirrorTableName(DEVICE, 'device_state', 1, 'other-lineage')).not.toBe(base);
  });
});

describe('physical column names', () => {
  it('keeps safe names verbatim, hostile ones included', () => {
    for (const n of ['a"b', '"; DROP TABLE x; --', 'ÜberTäble', 'semi;colon']) {
      expect(physicalColumnName(n, new Set())).toBe(n);
    }
  });

  it('derives a short unique name for long, control-character, reserved or clashing names', () => {
    const taken = new Set(['device_id', 'mode']);
    const long = physicalColumnName('c'.repeat(200), taken);
    expect(bytes(long)).toBeLessThanOrEqual(MAX_IDENT_BYTES);
    expect(long.startsWith('c'.repeat(20))).toBe(true);
    expect(physicalColumnName('c'.repeat(201), taken)).not.toBe(long);
    expect(physicalColumnName('device_id', taken)).toMatch(/^device_id_[0-9a-f]{8}$/);
    expect(physicalColumnName('MODE', taken)).toMatch(/^MODE_[0-9a-f]{8}$/);
    expect(isSafeIdentifier(physicalColumnName('tab\tle\u0000', taken))).toBe(true);
    const multi = physicalColumnName('日'.repeat(40), taken);
    expect(multi.isWellFormed()).toBe(true);
    expect(bytes(multi)).toBeLessThanOrEqual(MAX_IDENT_BYTES);
  });

  it('cuts UTF-8 on character boundaries', () => {
    expect(truncateUtf8('ééé', 5)).toBe('éé');
    expect(truncateUtf8('🚀🚀', 5)).toBe('🚀');
  });
});
