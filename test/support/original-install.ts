/**
 * What the original Python syncfail2ban (its makefile: pip install, then copies) leaves on a
 * server, for the upgrade tests: facts from its repository, written here.
 */

/** Its shipped config.cfg: every key, with the values it ships, and [jails] filled in. */
export const ORIGINAL_CONFIG = [
  '[default]',
  'log_debug = false',
  'log_max_size = 500000',
  'log_backup_count = 1',
  'f2b_sync = true',
  'mq_port = 18862',
  'mq_ip =',
  'sync_servers =',
  'connection_timeout = 10',
  'opn_fw_sync = false',
  'opn_fw_ip =',
  'opn_verify = false',
  '[jails]',
  'sshd = sshd-sync',
  '[opn_aliases]',
  '[opn_keys]',
  '',
].join('\n');

/** Its unit, which its makefile copies to /etc/systemd/system and enables. */
export const ORIGINAL_UNIT = [
  '# syncfail2ban.service',
  '[Unit]',
  'Description=Syncfail2ban Service',
  'After=network.target',
  '',
  '[Service]',
  'Type=simple',
  'ExecStart=/etc/syncfail2ban/syncfail2ban',
  'Restart=on-failure',
  '',
  '[Install]',
  'WantedBy=multi-user.target',
].join('\n');

/** A shell script that puts the original's files in place (its pip package already uninstalled). */
export function originalInstallScript(): string {
  return [
    'set -e',
    'mkdir -p /etc/syncfail2ban /etc/systemd/system/multi-user.target.wants',
    `cat > /etc/syncfail2ban/config.cfg <<'EOF'\n${ORIGINAL_CONFIG}EOF`,
    "printf '#!/usr/bin/python3\\n# the original program\\n' > /etc/syncfail2ban/syncfail2ban",
    "printf '#!/usr/bin/python3\\n# the original client\\n' > /etc/syncfail2ban/syncfail2ban-client",
    'chmod 0755 /etc/syncfail2ban/syncfail2ban /etc/syncfail2ban/syncfail2ban-client',
    `cat > /etc/systemd/system/syncfail2ban.service <<'EOF'\n${ORIGINAL_UNIT}\nEOF`,
    'ln -s /etc/systemd/system/syncfail2ban.service /etc/systemd/system/multi-user.target.wants/syncfail2ban.service',
  ].join('\n');
}
