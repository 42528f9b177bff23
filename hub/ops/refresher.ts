/**
 * A value that another thread owns, held here with the time it arrived. A reader gets it at once
 * while it is fresh; otherwise it waits for the next copy, and however many readers wait, only one
 * ask is out at a time. So a flood of readers costs the owner at most one ask per freshness window
 * (the ops listener's `/ready`, `/metrics` and `/health`, docs/operations.md "Ops port").
 */
export interface Refresher<T> {
  /** Calls back with a fresh value, or with `undefined` when the ask got no answer within `timeoutMs`. */
  get(reader: (value: T | undefined) => void): void;
  /** A new copy from the owner: every waiting reader gets it. */
  settle(value: T): void;
  /** Readers waiting now (bounded by the caller's connections, not by this module). */
  readonly waiting: number;
}

export interface RefresherOptions<T> {
  /** How long a copy is served, in ms (may depend on the copy: a failing readiness is kept shorter). */
  freshForMs(value: T): number;
  /** Sends one ask to the owner; `settle` is expected after it. */
  ask(): void;
  /** Waiting readers are answered `undefined` this long after the ask, and the next reader asks again. */
  timeoutMs: number;
  now?: () => number;
  setTimer?: (fn: () => void, ms: number) => { cancel(): void };
}

const realTimer = (fn: () => void, ms: number) => {
  const t = setTimeout(fn, ms);
  t.unref?.();
  return { cancel: () => clearTimeout(t) };
};

export function createRefresher<T>(opts: RefresherOptions<T>): Refresher<T> {
  const now = opts.now ?? Date.now;
  const setTimer = opts.setTimer ?? realTimer;
  let last: { at: number; value: T } | undefined;
  let readers: ((value: T | undefined) => void)[] = [];
  let timer: { cancel(): void } | undefined;
  const answer = (value: T | undefined) => {
    timer?.cancel();
    timer = undefined;
    const waiting = readers;
    readers = [];
    for (const r of waiting) r(value);
  };
  return {
    get(reader) {
      if (last && now() - last.at < opts.freshForMs(last.value)) return reader(last.value);
      readers.push(reader);
      if (timer) return; // an ask is out: this reader shares its answer
      timer = setTimer(() => answer(undefined), opts.timeoutMs);
      opts.ask();
    },
    settle(value) {
      last = { at: now(), value };
      answer(value);
    },
    get waiting() {
      return readers.length;
    },
  };
}
