#!/bin/sh
# Removes what install.sh installed; run by "make uninstall". Refuses while a fail2ban jail
# still runs sync-action (every ban would then fail with "syncfail2ban-client: not found").
# Keeps $CONFDIR/config.cfg, fail2ban files the admin changed, and fail2ban files a jail
# still uses (removing those would stop fail2ban from starting). Says only what it removed.
set -eu

. "$(dirname "$0")/install-common.sh"

check_paths

refuse_while_sync_action_used

disable_units
remove_nft_table
for unit in $UNITS; do
  remove "$DESTDIR$UNITDIR/$unit" "$UNITDIR/$unit"
done
if systemd_running; then
  "$SYSTEMCTL" daemon-reload
fi

# fail2ban's side: compared with what was installed (the copy under $LIBDIR/etc) before that goes.
shipped="$DESTDIR$LIBDIR/etc/fail2ban"
[ -d "$shipped" ] || shipped=etc/fail2ban
remove_fail2ban_side "$shipped"

for command in $COMMANDS; do
  if is_our_wrapper "$DESTDIR$BINDIR/$command"; then remove "$DESTDIR$BINDIR/$command" "$BINDIR/$command"; fi
done
client="$DESTDIR$CONFDIR/syncfail2ban-client"
if is_our_wrapper "$client"; then remove "$client" "$CONFDIR/syncfail2ban-client"; fi
[ ! -e "$client.orig" ] || say "the original client is still at $CONFDIR/syncfail2ban-client.orig"
remove "$DESTDIR$LIBDIR" "the program ($LIBDIR)"
for page in $MAN_PAGES; do
  remove "$DESTDIR$MANDIR/$page" "$MANDIR/$page"
done
for command in $COMMANDS; do
  remove "$DESTDIR$COMPLETIONDIR/$command" "$COMPLETIONDIR/$command"
done
remove "$DESTDIR$DOCDIR" "the documentation ($DOCDIR)"

if [ -e "$DESTDIR$CONFDIR/config.cfg" ]; then
  say "kept $CONFDIR/config.cfg; delete $CONFDIR yourself if you will not reinstall"
else
  rmdir "$DESTDIR$CONFDIR" 2> /dev/null || true
fi
[ ! -d "$DESTDIR/var/lib/syncfail2ban" ] || say "kept /var/lib/syncfail2ban (the agent's state: the holdings store, the OPNsense bridge's ledger); delete it yourself if unwanted"
[ "$removed" -gt 0 ] || say "nothing to remove: syncfail2ban is not installed here"
