import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { closestName } from '../../src/closest-name.js';
import type { Config } from '../../src/config.js';
import type { Fail2banClient } from '../../src/fail2ban/client.js';
import { missingSyncJailFix } from '../sinks/fail2ban/fail2ban-backend.js';
import type { Finding } from './finding.js';

const RELOAD = 'then run "fail2ban-client reload"';
const JAIL_FILE = "fail2ban's jail config (usually /etc/fail2ban/jail.local)";

/**
 * An action of a jail as fail2ban holds it: one of syncfail2ban's (the shell action, whose
 * ban command runs syncfail2ban-client, or the Python action in fail2ban-server), or another.
 */
type JailAction =
  | { name: string; kind: 'shell'; actionban: string }
  | { name: string; kind: 'python'; socket: string; refusedReason: string | null; dropped: number }
  | { name: string; kind: 'other' };

/**
 * Checks the running fail2ban against [jails]: every primary jail runs and publishes through
 * one sync action (the Python action handing its bans to this agent's action socket, or the
 * shell action whose client exists; not both, which would publish every ban twice); every
 * sync jail runs, keeps bans forever (bantime -1) and publishes nothing (no sync action,
 * which would send every applied ban round again).
 */
export async function checkJails(config: Config, client: Fail2banClient): Promise<Finding[]> {
  const findings: Finding[] = [];
  const running = new Set(await client.jails());
  for (const [primary, sync] of config.jails) {
    if (primary === sync) {
      findings.push({ level: 'fail', subject: `[jails] ${primary}`, message: 'maps a jail onto itself: every ban would be published again', fix: `map ${primary} to its own sync jail, e.g. "${primary} = ${primary}-sync"` });
      continue;
    }
    findings.push(...(await checkPrimary(config, client, running, primary, sync)));
    if (config.f2bSync) findings.push(...(await checkSync(client, running, primary, sync)));
  }
  if (!config.f2bSync && config.jails.size > 0) {
    findings.push({ level: 'ok', subject: 'sync jails', message: 'not checked: f2b_sync = false, so received bans are not applied here' });
  }
  return findings;
}

async function checkPrimary(config: Config, client: Fail2banClient, running: Set<string>, primary: string, sync: string): Promise<Finding[]> {
  const subject = `primary jail ${primary}`;
  if (!running.has(primary)) {
    const meant = closestName(primary, running);
    return [{
      level: 'fail',
      subject,
      message: `is not running in fail2ban, so nothing of it is published${meant ? `: did you mean ${meant}?` : ''}`,
      fix: meant
        ? `correct "${primary} = ${sync}" in [jails] to "${meant} = ${sync}"; or enable [${primary}] in ${JAIL_FILE}, ${RELOAD}`
        : `enable [${primary}] (enabled = true) in ${JAIL_FILE}, ${RELOAD}; or remove "${primary} = ${sync}" from [jails]`,
    }];
  }
  const actions = await jailActions(client, primary);
  const shell = actions.filter((action) => action.kind === 'shell');
  const python = actions.filter((action) => action.kind === 'python');
  if (shell.length === 0 && python.length === 0) {
    return [{
      level: 'fail',
      subject,
      message: 'has no sync action, so its bans are not published to the other servers',
      fix: `add syncfail2ban.py (or the shell action sync-action) to its action list in ${JAIL_FILE} ("action = %(action_)s" and an indented line "syncfail2ban.py"), ${RELOAD}`,
    }];
  }
  if (shell.length > 0 && python.length > 0) {
    return [{
      level: 'fail',
      subject,
      message: `runs both the Python action (${python[0]!.name}) and the shell action (${shell[0]!.name}): every ban is published twice, and the shell action still costs fail2ban a process per ban`,
      fix: `remove ${shell[0]!.name} from its action list in ${JAIL_FILE}, ${RELOAD}`,
    }];
  }
  return python.length > 0 ? checkPythonAction(config, primary, python[0]!) : [await checkShellAction(subject, shell[0]!)];
}

async function checkShellAction(subject: string, action: Extract<JailAction, { kind: 'shell' }>): Promise<Finding> {
  const program = action.actionban.trim().split(/\s+/)[0] ?? '';
  if (!(await isExecutable(program))) {
    return {
      level: 'fail',
      subject,
      message: `its sync action runs ${JSON.stringify(program)}, which does not exist or is not executable, so its bans are not published`,
      fix: 'run "make install" (it creates /etc/syncfail2ban/syncfail2ban-client), or set the client= of the action to the installed syncfail2ban-client',
    };
  }
  return { level: 'ok', subject, message: `runs and publishes its bans through ${program}` };
}

function checkPythonAction(config: Config, primary: string, action: Extract<JailAction, { kind: 'python' }>): Finding[] {
  const subject = `primary jail ${primary}`;
  if (action.refusedReason !== null) {
    const [what, fix] = action.refusedReason.split('; fix: ');
    return [{ level: 'fail', subject, message: `its Python action (${action.name}) publishes nothing: ${what}`, fix: `${fix ?? 'see fail2ban\'s log'}, ${RELOAD}` }];
  }
  if (action.socket !== config.actionSocket) {
    return [{
      level: 'fail',
      subject,
      message: `its Python action (${action.name}) hands its bans to ${action.socket}, but the agent takes them on ${config.actionSocket}, so they are not published`,
      fix: `give both the same path: action_socket in ${config.file}, or the action's config= or socket= option in ${JAIL_FILE}`,
    }];
  }
  const findings: Finding[] = [{ level: 'ok', subject, message: `runs and hands its bans to the agent on ${action.socket} (Python action ${action.name}, no process per ban)` }];
  if (action.dropped > 0) {
    findings.push({
      level: 'warn',
      subject,
      message: `its Python action dropped ${action.dropped} event(s) since fail2ban started, while the agent did not take them (fail2ban's log says when)`,
      fix: `run "syncfail2ban-client -f ${primary}" so that the other servers get its bans again`,
    });
  }
  return findings;
}

async function checkSync(client: Fail2banClient, running: Set<string>, primary: string, sync: string): Promise<Finding[]> {
  const subject = `sync jail ${sync}`;
  if (!running.has(sync)) {
    const meant = closestName(sync, running);
    return [
      {
        level: 'fail',
        subject,
        message: `is not running in fail2ban, so bans of ${primary} from other servers cannot be applied here${meant ? `: did you mean ${meant}?` : ''}`,
        fix: meant ? `correct "${primary} = ${sync}" in [jails] to "${primary} = ${meant}"; or ${missingSyncJailFix(sync)}` : missingSyncJailFix(sync),
      },
    ];
  }
  const findings: Finding[] = [];
  const bantime = await client.command(['get', sync, 'bantime']);
  if (bantime !== -1) {
    findings.push({
      level: 'fail',
      subject,
      message: `has bantime = ${String(bantime)}, so bans from other servers expire here on their own instead of when their origin unbans`,
      fix: `set "bantime = -1" in [${sync}] of ${JAIL_FILE}, ${RELOAD}`,
    });
  }
  for (const action of (await jailActions(client, sync)).filter((candidate) => candidate.kind !== 'other')) {
    const guarded = action.kind === 'python' && action.refusedReason !== null;
    findings.push({
      level: 'fail',
      subject,
      message:
        action.kind === 'shell'
          ? `runs the sync action (${action.name}): every ban applied to it would be published again, a loop between servers`
          : `runs the Python sync action (${action.name}): every ban applied to it would be published again, a loop between servers${guarded ? '; the action refuses to, and says so in fail2ban\'s log' : ''}`,
      fix: `remove ${action.kind === 'shell' ? action.name : 'syncfail2ban.py'} from the action list of [${sync}] in ${JAIL_FILE}, ${RELOAD}`,
    });
  }
  if (findings.length === 0) findings.push({ level: 'ok', subject, message: 'runs, keeps bans until unbanned (bantime = -1) and publishes nothing' });
  return findings;
}

async function jailActions(client: Fail2banClient, jail: string): Promise<JailAction[]> {
  const names = await client.command(['get', jail, 'actions']);
  if (!Array.isArray(names)) throw new Error(`fail2ban answered "get ${jail} actions" with ${JSON.stringify(names)}, not a list`);
  const actions: JailAction[] = [];
  for (const name of names) {
    if (typeof name !== 'string') continue;
    const property = (key: string) => client.command(['get', jail, 'action', name, key]).catch(() => undefined);
    // Python actions have no actionban; ours tells where it hands bans to.
    const actionban = await property('actionban');
    if (typeof actionban === 'string') {
      actions.push(name === 'sync-action' || actionban.includes('syncfail2ban-client') ? { name, kind: 'shell', actionban } : { name, kind: 'other' });
      continue;
    }
    const socket = await property('syncfail2ban_socket');
    if (typeof socket !== 'string') {
      actions.push({ name, kind: 'other' });
      continue;
    }
    const [refusedReason, dropped] = await Promise.all([property('refused_reason'), property('dropped')]);
    actions.push({ name, kind: 'python', socket, refusedReason: typeof refusedReason === 'string' ? refusedReason : null, dropped: typeof dropped === 'number' ? dropped : 0 });
  }
  return actions;
}

/** An absolute path, or a bare name looked up in PATH as the shell running the action would. */
async function isExecutable(program: string): Promise<boolean> {
  const candidates = program.includes('/') ? [program] : (process.env.PATH ?? '').split(':').filter(Boolean).map((dir) => join(dir, program));
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      return true;
    } catch {
      // try the next
    }
  }
  return false;
}
