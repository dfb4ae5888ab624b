import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

export type Resource<T> = Readonly<{
  data: T | undefined;
  error: unknown;
  loading: boolean;
  /** Load again now (after a mutation), keeping the current data on screen meanwhile. */
  reload: () => void;
}>;

/** Lists refresh by themselves this often while the tab is visible. */
export const REFRESH_MS = 3000;

/**
 * Load `load()` now and whenever `deps` change; with `pollMs`, again that long after each answer
 * (never two requests at once, none while the tab is hidden). A failed refresh keeps the last data.
 */
export function useResource<T>(
  load: () => Promise<T>,
  deps: readonly unknown[],
  pollMs: number | null = REFRESH_MS,
): Resource<T> {
  const [state, setState] = useState<{ data: T | undefined; error: unknown; loading: boolean }>({
    data: undefined,
    error: null,
    loading: true,
  });
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;

  useEffect(() => {
    let live = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      if (!live) return;
      if (document.hidden && pollMs !== null) {
        timer = setTimeout(run, pollMs);
        return;
      }
      try {
        const data = await loadRef.current();
        if (live) setState({ data, error: null, loading: false });
      } catch (error) {
        if (live) setState((s) => ({ data: s.data, error, loading: false }));
      }
      if (live && pollMs !== null) timer = setTimeout(run, pollMs);
    };
    setState((s) => ({ ...s, loading: true }));
    void run();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [...deps, tick, pollMs]);

  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}
