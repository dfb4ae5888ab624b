import type { LineageEvent, StoredEvent } from '../../domain/lineage/events';
import { InMemoryEventStore } from '../../infra/memory/event-store';
import { eventStoreContract, lineageEvent } from '../support/event-store-contract';

eventStoreContract('in-memory', {
  make: async () => new InMemoryEventStore<StoredEvent<LineageEvent>>(),
  event: lineageEvent,
});
