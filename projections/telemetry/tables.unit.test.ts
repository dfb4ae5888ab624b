import { isSafeIdentifier, telemetryTableName } from '../store/identifiers';
import { coalescedTelemetryTableName } from './tables';

const PROJECT = '0190f3a2-7b1c-7def-8abc-123456789abc';
const FLEET = '0190a0f1-0000-7000-8000-0000000000f1';
const HOSTILE = [
  'a"b',
  '"; DROP TABLE x; --',
  'ÜberTäble',
  '🚀 rockets',
  'x'.repeat(200),
  'My-Table',
  'my_table',
];

describe('coalesced telemetry table names', () => {
  it('edge_ts_p{project8}_{table} and edge_ts_f{fleet8}_{table}', () => {
    expect(coalescedTelemetryTableName('project', PROJECT, 'temps')).toBe('edge_ts_p0190f3a2_temps');
    expect(coalescedTelemetryTableName('fleet', FLEET, 'temps')).toBe('edge_ts_f0190a0f1_temps');
  });

  it('hostile table names become safe, distinct identifiers that never meet a device telemetry table', () => {
    const names = HOSTILE.map((t) => coalescedTelemetryTableName('fleet', FLEET, t));
    for (const n of names) {
      expect(isSafeIdentifier(n)).toBe(true);
      expect(n).toMatch(/^edge_ts_f0190a0f1_[a-z0-9_]+$/);
    }
    expect(new Set(names).size).toBe(names.length);
    expect(telemetryTableName(FLEET, 'temps')).not.toBe(coalescedTelemetryTableName('fleet', FLEET, 'temps'));
    expect(coalescedTelemetryTableName('fleet', FLEET, 'temps', 'salt')).not.toBe(
      coalescedTelemetryTableName('fleet', FLEET, 'temps'),
    );
  });
});
