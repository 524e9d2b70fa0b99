/**
 * Publishes made close together leave in one write per socket: a stream
 * is corked at its first publish and uncorked when the event loop's turn
 * ends (setImmediate), so a burst built across promise continuations (a
 * rekey's 10,000 updates, a relay's frames) is one writev, not one per
 * message (decision 110).
 *
 * But a turn is not short in a process that serves many connections: one
 * poll phase runs every socket event that came in, and in bench:storm the
 * agents' process spent 1.3 s in one, sealing some 2,000 joins, every one
 * of them corked until its end while kagi up sat idle waiting for them;
 * then all came at once (decision 136). So the cork is also bounded in
 * time, for every stream of the process together: a publish that finds
 * the oldest cork held MAX_CORK_MS uncorks them all first. Under a long
 * turn the corked streams go out every couple of milliseconds, still
 * many messages to a write where a burst is one.
 */

/** How long a publish may wait in a corked stream while the turn goes on (ms). */
export const MAX_CORK_MS = 2;

export interface Corkable {
  cork(): void;
  uncork(): void;
}

/** The streams corked now, for the whole process, and when the first of them was. */
const corked = new Set<Corkable>();
let since = 0;

/**
 * Cork `stream` until the turn ends (once per turn), first uncorking
 * every corked stream if the oldest cork has been held MAX_CORK_MS.
 * `now`: performance.now(), given by tests.
 */
export function corkTurn(stream: Corkable, now: number = performance.now()): void {
  if (corked.size > 0 && now - since >= MAX_CORK_MS) uncorkAll();
  if (corked.has(stream)) return;
  if (corked.size === 0) {
    since = now;
    setImmediate(uncorkAll);
  }
  stream.cork();
  corked.add(stream);
}

/** Streams corked now (for tests). */
export function corkedCount(): number {
  return corked.size;
}

function uncorkAll(): void {
  if (corked.size === 0) return;
  const streams = [...corked];
  corked.clear();
  for (const s of streams) s.uncork();
}
