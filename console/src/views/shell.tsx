import { href, useRoute } from '../router';
import { Mono } from '../components/ui';
import { useSignedIn } from '../session';
import { AuditView } from './audit';
import { DevicesView } from './devices';
import { LineageView } from './lineage';
import { LineagesView } from './lineages';
import { RegistryView } from './registry';
import { RejectionsView } from './rejections';
import { ReviewView } from './review';
import { ReviewsView } from './reviews';

const NAV = [
  ['lineages', 'Lineages'],
  ['reviews', 'Reviews'],
  ['registry', 'Registry'],
  ['devices', 'Devices'],
  ['rejections', 'Rejections'],
] as const;

function Screen() {
  const { parts, query } = useRoute();
  const [section = 'lineages', id, sub] = parts;
  switch (section) {
    case 'lineages':
      if (id && sub === 'audit') return <AuditView lineageId={id} asOf={query.get('as_of')} />;
      if (id) return <LineageView lineageId={id} />;
      return <LineagesView query={query} />;
    case 'reviews':
      return id ? <ReviewView reviewId={id} /> : <ReviewsView query={query} />;
    case 'registry':
      return <RegistryView />;
    case 'devices':
      return <DevicesView />;
    case 'rejections':
      return <RejectionsView query={query} />;
    default:
      return <p>No such page. Pick one on the left.</p>;
  }
}

export function Shell() {
  const { session, signOut } = useSignedIn();
  const { parts } = useRoute();
  const current = parts[0] ?? 'lineages';
  return (
    <div class="shell">
      <nav class="sidebar" aria-label="Sections">
        <div class="brand">
          <span class="logo" aria-hidden="true">
            ≋
          </span>{' '}
          Sluice
        </div>
        <ul>
          {NAV.map(([key, label]) => (
            <li key={key}>
              <a href={href(key)} aria-current={current === key ? 'page' : undefined}>
                {label}
              </a>
            </li>
          ))}
        </ul>
        <section class="who" aria-label="Signed in">
          <div class="who-name">{session.name}</div>
          <div class="small muted">project</div>
          <Mono title={session.project_id}>{session.project_id}</Mono>
          <div class="who-perm">
            {session.can_manage ? (
              <span class="badge badge-ok" title={session.permissions.join(', ')}>
                operator
              </span>
            ) : (
              <span class="badge badge-neutral" title={session.permissions.join(', ')}>
                read-only
              </span>
            )}
          </div>
          <ul class="perms" aria-label="Permissions">
            {session.permissions.map((p) => (
              <li key={p} class="mono small">
                {p}
              </li>
            ))}
          </ul>
          <button class="btn btn-plain btn-small" onClick={signOut}>
            Sign out
          </button>
        </section>
      </nav>
      <main class="content">
        <Screen />
      </main>
    </div>
  );
}
