import { readFile, readlink, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import type { Finding } from './finding.js';

/** Where systemd looks for a system unit, first match wins (the usual ones of systemd.unit(5)). */
export const SYSTEM_UNIT_DIRS = ['/etc/systemd/system', '/run/systemd/system', '/usr/local/lib/systemd/system', '/lib/systemd/system', '/usr/lib/systemd/system'];
const UNIT = 'syncfail2ban.service';

/**
 * Which syncfail2ban.service systemd runs. One in a directory that comes first (the original's
 * in /etc/systemd/system, say) hides the installed one: if it does not run our program, the
 * service is not syncfail2ban at all (fail); if it does, it is a full copy that an upgrade no
 * longer reaches (warn). Drop-ins (syncfail2ban.service.d/) are the way to change ours.
 */
export async function checkServiceUnit(dirs: readonly string[] = SYSTEM_UNIT_DIRS): Promise<Finding[]> {
  const found = (await Promise.all(dirs.map(async (dir) => {
    const path = join(dir, UNIT);
    const text = await readFile(path, 'utf8').catch(() => undefined);
    const target = await readlink(path).catch(() => undefined);
    // With /lib a link to /usr/lib (merged /usr), one file is found twice.
    const real = await realpath(path).catch(() => path);
    return text === undefined && target === undefined ? undefined : { path, real, text, masked: target === '/dev/null' };
  }))).filter((unit) => unit !== undefined);
  const units = found.filter((unit, index) => found.findIndex((other) => other.real === unit.real) === index);
  const [used, ...hidden] = units;
  if (!used) return [];
  const subject = `unit ${UNIT}`;
  if (used.masked) return [{ level: 'warn', subject, message: `${used.path} masks it: systemd will not start syncfail2ban`, fix: `systemctl unmask ${UNIT}` }];
  const execStart = /^ExecStart=[-@:+!]*(\S+)/m.exec(used.text ?? '')?.[1];
  const ours = execStart !== undefined && /\/bin\/syncfail2ban$/.test(execStart);
  if (!ours) {
    return [{
      level: 'fail',
      subject,
      message: `${used.path} runs ${execStart ?? 'no ExecStart'}, not syncfail2ban's program${hidden.length ? `, and hides ${hidden.map((unit) => unit.path).join(', ')}` : ''} (the original's unit?)`,
      fix: `mv ${used.path} ${used.path}.orig && systemctl daemon-reload; change the service with "systemctl edit ${UNIT}" instead`,
    }];
  }
  if (hidden.length) {
    return [{
      level: 'warn',
      subject,
      message: `${used.path} hides ${hidden.map((unit) => unit.path).join(', ')}: upgrades change the hidden one, not this copy (a make install beside the package, or "systemctl edit --full"?)`,
      fix: `remove ${used.path} (keep your changes in "systemctl edit ${UNIT}" drop-ins), then systemctl daemon-reload`,
    }];
  }
  return [{ level: 'ok', subject, message: `${used.path} runs ${execStart}` }];
}
