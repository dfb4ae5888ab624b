import { renderTelemetry } from './telemetry';

const agg = (avg: number) => ({ min: avg - 1, max: avg + 1, avg, count: 3, last: avg });

describe('sluice telemetry output', () => {
  it('draws buckets as a table and the chosen field’s averages as a sparkline', () => {
    const out = renderTelemetry(
      {
        table: 'edge_ts_f0123abcd_temps',
        coalesced: true,
        fields: [],
        bucket_seconds: 60,
        buckets: [1, 5, 3].map((v, i) => ({
          start: `2026-04-28T09:0${i}:00.000Z`,
          rows: 3,
          fields: { temperature: agg(20 + v), hum: agg(40 - v) },
        })),
        next_cursor: 'abc',
      },
      { chart: 'hum' },
    );
    const lines = out.split('\n');
    expect(lines[0]).toMatch(
      /^bucket\s+rows\s+temperature min\s+temperature avg\s+temperature max\s+temperature last\s+hum min/,
    );
    expect(lines[1]).toMatch(/^2026-04-28T09:00:00.000Z\s+3\s+20\s+21\s+22\s+21\s+38\s+39\s+40\s+39$/);
    expect(out).toContain('hum avg  █▁▅  35 … 39\n');
    expect(out).toContain('more: --cursor abc (or --all)');
  });

  it('shows rows with the device in coalesced tables, and says when nothing is materialized', () => {
    const out = renderTelemetry(
      {
        table: 't',
        coalesced: true,
        fields: [],
        bucket_seconds: null,
        rows: [{ device_id: '0190abcd-0000', ts: 'x', time: '2026-04-28T09:00:01.000Z', values: { v: 1.5 } }],
        next_cursor: null,
      },
      {},
    );
    expect(out).toBe('time                      device      v\n2026-04-28T09:00:01.000Z  0190abcd  1.5\n');
    expect(
      renderTelemetry(
        { table: null, coalesced: false, fields: [], bucket_seconds: null, next_cursor: null },
        {},
      ),
    ).toContain('no telemetry materialized yet');
  });
});
