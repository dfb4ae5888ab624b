import { Age, ErrorNote, Loading, Mono, Table } from '../components/ui';
import { useResource } from '../hooks';
import { href } from '../router';
import { useSignedIn } from '../session';
import type { Page, Rejection } from '../types';

/** Codes are counted over the newest rejections this many at a time. */
const WINDOW = 500;

export function RejectionsView({ query }: { query: URLSearchParams }) {
  const { client } = useSignedIn();
  const code = query.get('code') ?? '';
  const all = useResource(() => client.get<Page<Rejection>>('/edge/rejections', { limit: WINDOW }), []);
  const list = useResource(
    () => client.get<Page<Rejection>>('/edge/rejections', { code, limit: 100 }),
    [code],
  );
  const byCode = new Map<string, number>();
  for (const r of all.data?.items ?? []) byCode.set(r.code, (byCode.get(r.code) ?? 0) + 1);
  const codes = [...byCode.entries()].sort((a, b) => b[1] - a[1]);
  return (
    <section aria-labelledby="rejections-title">
      <header class="page-head">
        <h1 id="rejections-title">Rejections</h1>
        <p class="muted">
          Uplinks the cloud refused, with the code that says why; the device was told in its receipt.
        </p>
      </header>
      <ErrorNote error={all.error ?? list.error} />
      <div class="chips" role="group" aria-label="Rejections by code">
        <a class="chip" href={href('rejections')} aria-current={code === '' ? 'true' : undefined}>
          all <span class="chip-n">{all.data?.total ?? 0}</span>
        </a>
        {codes.map(([c, n]) => (
          <a
            key={c}
            class="chip"
            href={href('rejections', { code: c })}
            aria-current={code === c ? 'true' : undefined}
          >
            {c} <span class="chip-n">{n}</span>
          </a>
        ))}
      </div>
      {(all.data?.total ?? 0) > WINDOW && (
        <p class="small muted">Counts are over the newest {WINDOW} rejections.</p>
      )}
      {!list.data ? (
        <Loading />
      ) : (
        <Table<Rejection>
          label="Rejections"
          rows={list.data.items}
          rowKey={(r) => String(r.stream_seq)}
          empty="Nothing was rejected."
          columns={[
            { header: 'Received', cell: (r) => <Age at={r.received_at} /> },
            { header: 'Code', cell: (r) => <Mono>{r.code}</Mono> },
            { header: 'Kind', cell: (r) => r.kind },
            { header: 'Device', cell: (r) => <Mono>{r.device_key}</Mono> },
            { header: 'Message', cell: (r) => r.message },
          ]}
        />
      )}
    </section>
  );
}
