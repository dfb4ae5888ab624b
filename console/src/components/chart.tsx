import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';

/** The charts show the last two minutes, whatever has been sampled so far. */
const WINDOW_S = 120;

/** One time series: x in Unix seconds, y the value; drawn with uPlot into a small fixed-size canvas. */
export function Chart({
  title,
  unit,
  xs,
  ys,
  color = '#2563eb',
}: {
  title: string;
  unit: string;
  xs: readonly number[];
  ys: readonly number[];
  color?: string;
}) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  useEffect(() => {
    if (!host.current) return;
    plot.current = new uPlot(
      {
        width: 420,
        height: 150,
        legend: { show: false },
        cursor: { show: true, y: false },
        scales: {
          x: {
            time: true,
            range: (_u, _min, max) => [(max ?? Date.now() / 1000) - WINDOW_S, max ?? Date.now() / 1000],
          },
          y: { range: (_u, _min, max) => [0, Math.max(1, (max ?? 0) * 1.15)] },
        },
        axes: [
          { stroke: '#64748b', grid: { stroke: '#eef2f7' }, size: 30 },
          { stroke: '#64748b', grid: { stroke: '#eef2f7' }, size: 48, label: unit, labelSize: 14 },
        ],
        series: [{}, { label: title, stroke: color, width: 2, fill: `${color}22`, points: { show: false } }],
      },
      [[], []],
      host.current,
    );
    return () => {
      plot.current?.destroy();
      plot.current = null;
    };
  }, [title, unit, color]);

  useEffect(() => {
    plot.current?.setData([xs as number[], ys as number[]]);
  }, [xs, ys]);

  const last = ys[ys.length - 1];
  return (
    <figure class="chart" aria-label={title}>
      <figcaption>
        {title}
        <span class="chart-now">{last === undefined ? '—' : `${Math.round(last * 10) / 10} ${unit}`}</span>
      </figcaption>
      <div class="chart-plot">
        <div ref={host} />
        {xs.length < 2 && <span class="chart-wait">collecting samples…</span>}
      </div>
    </figure>
  );
}
