import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../../src/config.js';
import type { Fail2banClient } from '../../src/fail2ban/client.js';
import { missingSyncJailFix } from '../sinks/fail2ban/fail2ban-backend.js';
import type { Finding } from './finding.js';

const RELOAD = 'then run "fail2ban-client reload"';
const JAIL_FILE = "fail2ban's jail config (usually /etc/fail2ban/jail.local)";

/** An action of a jail as fail2ban holds it, with its ban command interpolated (but for <ip>). */
interface JailAction {
  name: string;
  actionban: string;
}

/**
 * Checks the running fail2ban against [jails]: every primary jail runs, publishes through the
 * sync action, whose client exists; every sync jail runs, keeps bans forever (bantime -1) and
 * publishes nothing (no sync action, which would send every applied ban round again).
 */
export async function checkJails(config: Config, client: Fail2banClient): Promise<Finding[]> {
  const findings: Finding[] = [];
  const running = new Set(await client.jails());
  for (const [primary, sync] of config.jails) {
    if (primary === sync) {
      findings.push({ level: 'fail', subject: `[jails] ${primary}`, message: 'maps a jail onto itself: every ban would be published again', fix: `map ${primary} to its own sync jail, e.g. "${primary} = ${primary}-sync"` });
      continue;
    }
    findings.push(await checkPrimary(client, running, primary, sync));
    if (config.f2bSync) findings.push(...(await checkSync(client, running, primary, sync)));
  }
  if (!config.f2bSync && config.jails.size > 0) {
    findings.push({ level: 'ok', subject: 'sync jails', message: 'not checked: f2b_sync = false, so received bans are not applied here' });
  }
  return findings;
}

async function checkPrimary(client: Fail2banClient, running: Set<string>, primary: string, sync: string): Promise<Finding> {
  const subject = `primary jail ${primary}`;
  if (!running.has(primary)) {
    return {
      level: 'fail',
      subject,
      message: 'is not running in fail2ban, so nothing of it is published',
      fix: `enable [${primary}] (enabled = true) in ${JAIL_FILE}, ${RELOAD}; or remove "${primary} = ${sync}" from [jails]`,
    };
  }
  const syncActions = (await jailActions(client, primary)).filter(isSyncAction);
  if (syncActions.length === 0) {
    return {
      level: 'fail',
      subject,
      message: 'has no sync action, so its bans are not published to the other servers',
      fix: `add sync-action to its action list in ${JAIL_FILE} ("action = %(action_)s" and an indented line "sync-action"), ${RELOAD}`,
    };
  }
  const program = syncActions[0]!.actionban.trim().split(/\s+/)[0] ?? '';
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

async function checkSync(client: Fail2banClient, running: Set<string>, primary: string, sync: string): Promise<Finding[]> {
  const subject = `sync jail ${sync}`;
  if (!running.has(sync)) {
    return [
      {
        level: 'fail',
        subject,
        message: `is not running in fail2ban, so bans of ${primary} from other servers cannot be applied here`,
        fix: missingSyncJailFix(sync),
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
  const looping = (await jailActions(client, sync)).filter(isSyncAction);
  if (looping.length > 0) {
    findings.push({
      level: 'fail',
      subject,
      message: `runs the sync action (${looping.map((action) => action.name).join(', ')}): every ban applied to it would be published again, a loop between servers`,
      fix: `remove sync-action from the action list of [${sync}] in ${JAIL_FILE}, ${RELOAD}`,
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
    // Python actions have no actionban; they are not ours.
    const actionban = await client.command(['get', jail, 'action', name, 'actionban']).catch(() => '');
    actions.push({ name, actionban: typeof actionban === 'string' ? actionban : '' });
  }
  return actions;
}

function isSyncAction(action: JailAction): boolean {
  return action.name === 'sync-action' || action.actionban.includes('syncfail2ban-client');
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
