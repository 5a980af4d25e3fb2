/** An upgraded host's jail.local: sshd publishes through sync-action (or no longer does), sshd-sync applies. */
export function jailLocal({ syncAction }: { syncAction: boolean }): string {
  return ['[sshd]', 'action = %(action_)s', ...(syncAction ? ['         sync-action'] : []), '[sshd-sync]', 'filter = sync-filter', 'logpath = /var/log/syncfail2ban-dummy.log', 'bantime = -1', ''].join('\n');
}
