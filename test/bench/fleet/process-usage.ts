import { readFileSync } from 'node:fs';

/** Clock ticks per second in /proc/<pid>/stat: USER_HZ, 100 on Linux. */
const TICKS_PER_SECOND = 100;

export interface Usage {
  /** CPU seconds (user and system) since the process started. */
  cpuS: number;
  rssMb: number;
  /** The most RSS it had at any time. */
  peakRssMb: number;
}

/** A process's CPU time and memory from /proc, or null once it is gone. */
export function usage(pid: number): Usage | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
    return { cpuS: (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND, rssMb: kb('VmRSS') / 1024, peakRssMb: kb('VmHWM') / 1024 };
  } catch {
    return null;
  }
}

/** CPU use of `pid` between two readings, as a percentage of one core. */
export function cpuPercent(before: Usage, after: Usage, wallMs: number): number {
  return ((after.cpuS - before.cpuS) / (wallMs / 1000)) * 100;
}
