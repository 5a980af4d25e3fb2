/** Waits for `promise`, but no longer than `ms` (Infinity: as long as it takes). */
export async function waitAtMost(promise: Promise<unknown>, ms: number): Promise<void> {
  if (!Number.isFinite(ms)) {
    await promise;
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([promise, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
