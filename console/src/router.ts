import { useEffect, useState } from 'preact/hooks';

/** Hash routes (`#/lineages/ID?status=paused`): the server only ever serves index.html. */
export type Route = Readonly<{ parts: readonly string[]; query: URLSearchParams }>;

function parse(hash: string): Route {
  const raw = hash.replace(/^#\/?/, '');
  const [path = '', search = ''] = raw.split('?', 2);
  return {
    parts: path.split('/').filter(Boolean).map(decodeURIComponent),
    query: new URLSearchParams(search),
  };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(location.hash));
  useEffect(() => {
    const on = () => setRoute(parse(location.hash));
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

/** `href('lineages', id)` → `#/lineages/<id>`, with an optional query. */
export function href(...parts: (string | Record<string, string | undefined>)[]): string {
  const path = parts.filter((p): p is string => typeof p === 'string').map(encodeURIComponent);
  const q = parts.find((p): p is Record<string, string | undefined> => typeof p === 'object');
  const search = q
    ? new URLSearchParams(Object.entries(q).filter((e): e is [string, string] => !!e[1])).toString()
    : '';
  return `#/${path.join('/')}${search ? `?${search}` : ''}`;
}

export const navigate = (to: string): void => {
  location.hash = to.replace(/^#/, '');
};
