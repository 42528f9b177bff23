/** ACL grants as they appear in the `acl` claim and in role defaults. Patterns are org-relative. */
export interface GrantSpec {
  pub?: string[];
  sub?: string[];
  /** Command grants: `type` may be a command type or `*`; `topic` is a topic pattern. */
  cmd?: { type: string; topic: string }[];
  /** Read models the holder may query (`audit`, `devices`, `sessions`, `commands`, or `*` for all). */
  read?: string[];
}

/** The verified identity behind a connection or request. `org` comes only from the token. */
export interface Principal {
  readonly sub: string;
  readonly org: string;
  readonly roles: readonly string[];
  readonly acl?: GrantSpec;
  readonly jti?: string;
  /** Expiry, seconds since the epoch (always present: tokens without `exp` are refused). */
  readonly exp: number;
  /** Issued-at, seconds since the epoch, when the token carries one (`{sub, issuedBefore}` revocations compare it). */
  readonly iat?: number;
}

/** Verifies a compact JWT. Rejects with AuthError whose `reason` is short and safe to show. */
export interface TokenVerifier {
  verify(token: string): Promise<Principal>;
  close?(): void;
}
