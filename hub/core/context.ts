import type { Principal } from '../auth/principal.ts';
import type { Grants } from '../acl/grants.ts';

/** What every transport knows about an authenticated client. */
export interface ClientContext {
  principal: Principal;
  grants: Grants;
  /** Connection or request id, for logs and audit metadata. */
  session: string;
}
