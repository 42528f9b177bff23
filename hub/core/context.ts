import type { Principal } from '../auth/principal.ts';
import type { Grants } from '../acl/grants.ts';

/** What every transport knows about an authenticated client. */
export interface ClientContext {
  principal: Principal;
  grants: Grants;
  /** Connection or request id, for logs and audit metadata. */
  session: string;
  /** Recorded as `correlationId` of the events this client causes; defaults to `session`. */
  correlationId?: string;
}

/** The transport a request arrived on, as recorded in audit events. */
export type Transport = 'ws' | 'http' | 'mqtt';
