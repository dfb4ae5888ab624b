import { Age, ErrorNote, Loading, Mono, Table } from '../components/ui';
import { useResource } from '../hooks';
import { href } from '../router';
import { useSignedIn } from '../session';
import type { Device, Page } from '../types';

export function DevicesView() {
  const { client } = useSignedIn();
  const res = useResource(() => client.get<Page<Device>>('/edge/devices', { limit: 500 }), []);
  return (
    <section aria-labelledby="devices-title">
      <header class="page-head">
        <h1 id="devices-title">Devices</h1>
        <p class="muted">Every device that sent a batch, with its fleet and when it was last seen.</p>
      </header>
      <ErrorNote error={res.error} />
      {!res.data ? (
        <Loading />
      ) : (
        <Table<Device>
          label="Devices"
          rows={res.data.items}
          rowKey={(d) => d.device_id}
          empty="No device has sent a batch yet."
          columns={[
            {
              header: 'Device',
              cell: (d) => (
                <a class="strong" href={href('lineages', { device: d.device_name })}>
                  {d.device_name}
                </a>
              ),
            },
            {
              header: 'Fleet',
              cell: (d) => (d.fleet_id ? <Mono>{d.fleet_id}</Mono> : <span class="muted">none</span>),
            },
            { header: 'Tables', numeric: true, cell: (d) => d.lineages },
            { header: 'Last seen', cell: (d) => <Age at={d.last_seen_at} /> },
            { header: 'Device id', cell: (d) => <Mono title={d.device_id}>{d.device_id}</Mono> },
          ]}
        />
      )}
    </section>
  );
}
