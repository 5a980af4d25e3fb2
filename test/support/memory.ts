import { readFile } from 'node:fs/promises';
import { waitFor } from './wait.js';

/** Resident memory of a process from /proc: now, and the peak since it started (VmHWM), in MB. */
export async function residentMb(pid: number): Promise<{ now: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { now: kib('VmRSS') / 1024, peak: kib('VmHWM') / 1024 };
}

/** A process's RSS in MB once it has not moved by more than 1 MB for `samples` seconds (after bulk work: the agent has trimmed its heap). */
export async function settledRss(pid: number, samples = 10): Promise<number> {
  const seen: number[] = [];
  await waitFor(
    async () => {
      seen.push((await residentMb(pid)).now);
      const last = seen.slice(-samples);
      return last.length === samples && Math.max(...last) - Math.min(...last) <= 1;
    },
    `the RSS of process ${pid} to settle`,
    120_000,
    1_000,
  );
  return seen.at(-1)!;
}
