/**
 * Every deadline a test waits for (a log line, a state, a child's exit) is
 * scaled by one setting, KAGI_TEST_SLOWDOWN (default 1; .ci/run sets 2):
 * a deadline only bounds a wait for an event, so a larger one costs nothing
 * when the event comes, and a busy machine gets the time it needs.
 */
export const SLOWDOWN = Math.max(1, Number(process.env.KAGI_TEST_SLOWDOWN ?? 1) || 1);

/** `ms`, scaled for this machine. */
export const deadline = (ms: number): number => Math.round(ms * SLOWDOWN);
