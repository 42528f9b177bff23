/**
 * Polls `fn` until it returns a truthy value (a rejection counts as not yet: a port still closed)
 * and returns it; throws naming `what`, and the last error, after `timeoutMs`.
 */
export async function waitUntil<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 15000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
