/** Exponential backoff with full jitter: spreads reconnect storms across workers. */
export function backoffDelay(attempt: number, baseMs: number, capMs: number): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt - 1, 30));
  return Math.floor(Math.random() * ceiling);
}

/** Sleeps, waking early (checked every 50 ms) once `stop()` turns true. */
export async function sleep(ms: number, stop?: () => boolean): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (stop?.()) return;
    await new Promise((r) => setTimeout(r, Math.min(50, end - Date.now())));
  }
}
