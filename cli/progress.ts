import type { Io } from './output';

export type ProgressBar = Readonly<{
  /** Show `value` of `total` (the bar appears at the first call). */
  update: (value: number, total: number) => void;
  stop: () => void;
}>;

const NO_BAR: ProgressBar = { update: () => undefined, stop: () => undefined };

/**
 * A progress bar on stderr when it is a terminal (`io.progress`); elsewhere (pipes, files, tests)
 * every call does nothing. `unit` follows the count, e.g. "events".
 */
export async function progressBar(io: Io, label: string, unit?: string): Promise<ProgressBar> {
  if (!io.progress) return NO_BAR;
  const { Presets, SingleBar } = await import('cli-progress');
  const bar = new SingleBar(
    {
      format: `${label} [{bar}] {percentage}% | {value}/{total}${unit ? ` ${unit}` : ''} | {eta}s left`,
      stream: io.progress,
      hideCursor: true,
      clearOnComplete: true,
    },
    Presets.shades_classic,
  );
  let started = false;
  return {
    update: (value, total) => {
      if (!started) {
        bar.start(total, value);
        started = true;
        return;
      }
      bar.setTotal(total);
      bar.update(value);
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}
